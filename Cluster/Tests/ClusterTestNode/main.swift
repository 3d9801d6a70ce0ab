#if canImport(Glibc)
    import Glibc
#endif
import ClusterTestWork
import Foundation
import Logging
import Multiprocessing
import MultiprocessingCluster

// A cluster node for the tests: `ClusterTestNode --cluster-node URL [--cluster-workers N]`.
// Its workers learn its pid from the environment, so test work can name
// (or kill) the node that runs it. `ClusterTestNode drive URL COUNT MS`
// instead runs a driver whose map the tests kill.
//
// The node's pool workers run this top-level code too, up to the first start
// (README, "Top-level code in main.swift"): they inherit the variable from
// the node and must keep it, and they start no watcher thread of their own.
let isNodeItself = getenv("CLUSTER_TEST_NODE_PID") == nil
if isNodeItself {
    setenv("CLUSTER_TEST_NODE_PID", "\(getpid())", 1)
    // A node whose test process is gone (crashed, or killed before its
    // teardown) drains and exits instead of living on: it asks itself to
    // drain, and ends five seconds later whatever the drain is doing.
    let parent = getppid()
    Thread.detachNewThread {
        while getppid() == parent { usleep(200_000) }
        kill(getpid(), SIGTERM)
        sleep(5)
        _exit(3)
    }
}

/// Unbuffered, so the tests see each line as it is written.
func say(_ line: String) {
    FileHandle.standardOutput.write(Data((line + "\n").utf8))
}

if CommandLine.arguments.count >= 5 && CommandLine.arguments[1] == "drive" {
    let database = try ClusterDatabase(url: CommandLine.arguments[2])
    let count = Int(CommandLine.arguments[3])!
    let milliseconds = Int(CommandLine.arguments[4])!
    let pool = try await ClusterPool(database: database)
    say("pool \(pool.id)")
    var done = 0
    for try await _ in pool.map(Slow.self, (0..<count).map { SlowItem(value: $0, milliseconds: milliseconds) }, chunkSize: 1) {
        done += 1
        say("done \(done)")
    }
    await pool.terminate()
    exit(0)
}

do {
    // CLUSTER_TEST_NODE_LOG=1: the node says what it does, on stderr (the test keeps its log).
    var logger: Logger?
    if ProcessInfo.processInfo.environment["CLUSTER_TEST_NODE_LOG"] != nil {
        logger = Logger(label: "node \(getpid())", factory: { StreamLogHandler.standardError(label: $0) })
        logger?.logLevel = .debug
    }
    if try await ClusterNode.runFromCommandLine(logger: logger) {
        say("node drained")
        exit(0)
    }
    say("usage: ClusterTestNode --cluster-node URL [--cluster-workers N] [--cluster-task-timeout S]")
    exit(2)
} catch {
    say("node failed: \(error)")
    exit(1)
}
