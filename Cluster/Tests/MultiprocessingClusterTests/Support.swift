#if canImport(Glibc)
    import Glibc
#endif
import Foundation
import Logging
import Multiprocessing
import MultiprocessingCluster
import PostgresNIO
import Testing

/// The server the tests use: `Cluster/scripts/with-postgres.sh` starts one and sets this.
let serverURL = ProcessInfo.processInfo.environment["MULTIPROCESSING_CLUSTER_URL"]

/// Why the cluster tests are skipped, when they are.
let noServer =
    "no PostgreSQL server: run the cluster tests as Cluster/scripts/with-postgres.sh swift test --package-path Cluster"

/// Every cluster test, one at a time: they share one server, which some of
/// them restart or cut off, and a soak measures its tables.
@Suite(.serialized, .enabled(if: serverURL != nil, Comment(rawValue: noServer)))
enum ClusterTests {}

/// A cluster of its own for one test: a fresh schema in the test server, and
/// the node processes it started, killed and reaped at the end.
final class TestCluster: @unchecked Sendable {
    // @unchecked: `nodes` is only touched by the test's own task.
    let schema: String
    let url: String
    let database: ClusterDatabase
    private(set) var nodes: [NodeProcess] = []

    init() throws {
        schema = "t_\(UInt32.random(in: 0...UInt32.max))_\(getpid())"
        url = serverURL! + "?schema=\(schema)"
        database = try ClusterDatabase(url: url)
    }

    /// Starts a node process with `workers` workers and waits until it has joined.
    ///
    /// With `namespace`, the node runs in that network namespace and reaches
    /// the server at `serverURL` (the test server's address from inside it).
    @discardableResult
    func startNode(
        workers: Int = 2, extra: [String] = [], namespace: String? = nil, serverURL: String? = nil
    ) async throws -> NodeProcess {
        let before = try await nodeIDs()
        let url = serverURL.map { $0 + "?schema=\(schema)" } ?? self.url
        let node = try NodeProcess(
            arguments: ["--cluster-node", url, "--cluster-workers", "\(workers)"] + extra, namespace: namespace)
        nodes.append(node)
        try await eventually("node \(node.pid) joins", within: .seconds(60)) {
            !(try await self.nodeIDs().subtracting(before).isEmpty) || !node.isRunning
        }
        guard node.isRunning else {
            throw MultiprocessingError(.processDied, "the test node exited at start: \(node.output)")
        }
        return node
    }

    /// Runs `statement` on a connection of the test's own and returns its rows.
    func query(_ statement: PostgresQuery) async throws -> [PostgresRow] {
        let logger = Logger(label: "test")
        do {
            let connection = try await PostgresConnection.connect(
                configuration: database.configuration, id: 1, logger: logger)
            do {
                let rows = try await connection.query(statement, logger: logger).collect()
                try await connection.close()
                return rows
            } catch {
                try? await connection.close()
                throw error
            }
        } catch {
            // postgres-nio's own description hides the server's message.
            throw TestDatabaseError(description: "\(statement.sql): \(String(reflecting: error))")
        }
    }

    func count(_ sql: String) async throws -> Int {
        let rows = try await query(PostgresQuery(unsafeSQL: sql))
        return Int(try rows.first!.decode(Int64.self))
    }

    func nodeIDs() async throws -> Set<Int64> {
        guard try await schemaExists() else { return [] }
        return Set(try await query(PostgresQuery(unsafeSQL: "SELECT id FROM \(schema).node")).map { try $0.decode(Int64.self) })
    }

    func nodeID(pid: Int32) async throws -> Int64? {
        let rows = try await query(PostgresQuery(unsafeSQL: "SELECT id FROM \(schema).node WHERE pid = \(pid)"))
        return try rows.first?.decode(Int64.self)
    }

    func schemaExists() async throws -> Bool {
        let rows = try await query("SELECT to_regclass(\(schema + ".node")) IS NOT NULL")
        return try rows.first!.decode(Bool.self)
    }

    /// Kills every node and drops the schema.
    func tearDown() async {
        for node in nodes { node.kill(SIGKILL) }
        for node in nodes { node.wait() }
        _ = try? await query(PostgresQuery(unsafeSQL: "DROP SCHEMA IF EXISTS \(schema) CASCADE"))
    }
}

/// A statement of the test's own failed: the server's whole answer.
struct TestDatabaseError: Error, CustomStringConvertible {
    let description: String
}

/// A node (or driver) process: the test node program.
final class NodeProcess: @unchecked Sendable {
    // @unchecked: Foundation's Process is thread-safe for these calls.
    private let process = Foundation.Process()
    private let log: URL

    /// Starts the test node program with `arguments`, in the network
    /// namespace `namespace` if given (`ip netns exec` executes the program
    /// in place, so the process's pid is the node's).
    init(arguments: [String], namespace: String? = nil) throws {
        let directory = (try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") as NSString)
            .deletingLastPathComponent
        let program = directory + "/ClusterTestNode"
        if let namespace {
            process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            process.arguments = ["ip", "netns", "exec", namespace, program] + arguments
        } else {
            process.executableURL = URL(fileURLWithPath: program)
            process.arguments = arguments
        }
        log = URL(fileURLWithPath: NSTemporaryDirectory()).appendingPathComponent("cluster-node-\(UUID()).log")
        _ = FileManager.default.createFile(atPath: log.path, contents: nil)
        let handle = try FileHandle(forWritingTo: log)
        process.standardOutput = handle
        process.standardError = handle
        try process.run()
    }

    var pid: Int32 { process.processIdentifier }
    var isRunning: Bool { process.isRunning }
    var output: String { (try? String(contentsOf: log, encoding: .utf8)) ?? "" }
    var terminationStatus: Int32 { process.terminationStatus }
    var terminationReason: Foundation.Process.TerminationReason { process.terminationReason }

    func kill(_ signal: Int32) {
        if process.isRunning { Glibc.kill(process.processIdentifier, signal) }
    }

    func wait() {
        process.waitUntilExit()
    }

    /// Waits for the process to exit, up to `timeout`; whether it did.
    func wait(within timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline { try? await Task.sleep(for: .milliseconds(20)) }
        return !process.isRunning
    }

    deinit {
        if ProcessInfo.processInfo.environment["CLUSTER_TEST_NODE_LOG"] != nil {
            print("node log kept: \(log.path)")
            return
        }
        try? FileManager.default.removeItem(at: log)
    }
}

/// Runs the program at `path` with `arguments` and returns its exit status.
///
/// Not Foundation's `Process`: it learns that a child exited from a socket
/// the child inherits, so a script that starts a daemon (the restart script
/// starts the PostgreSQL server) never seems to end while the daemon lives.
func runScript(_ path: String, _ arguments: [String] = []) throws -> Int32 {
    let argv = ([path] + arguments).map { strdup($0) } + [nil]
    defer { for pointer in argv { free(pointer) } }
    var pid: pid_t = 0
    let spawned = posix_spawn(&pid, path, nil, nil, argv, environ)
    guard spawned == 0 else {
        throw MultiprocessingError(.invalidArgument, "could not run \(path): \(String(cString: strerror(spawned)))")
    }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    return (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
}

/// Waits until `condition` holds, checking every 20 ms, failing after `timeout`.
func eventually(
    _ what: String, within timeout: Duration, _ condition: () async throws -> Bool
) async throws {
    let deadline = ContinuousClock.now + timeout
    while true {
        if try await condition() { return }
        guard ContinuousClock.now < deadline else {
            throw MultiprocessingError(.timedOut, "\(what): did not happen within \(timeout)")
        }
        try await Task.sleep(for: .milliseconds(20))
    }
}

/// Runs `body` with a fresh test cluster, torn down afterwards.
func withTestCluster<R>(_ body: (TestCluster) async throws -> R) async throws -> R {
    let cluster = try TestCluster()
    do {
        let result = try await body(cluster)
        await cluster.tearDown()
        return result
    } catch {
        await cluster.tearDown()
        throw error
    }
}
