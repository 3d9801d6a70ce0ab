#if canImport(Glibc)
    import Glibc
#endif
import Foundation
import Logging
import Multiprocessing
import MultiprocessingCluster
import PostgresNIO
import Synchronization

// The cluster's benchmarks, printed as one JSON document of schema 1
// (shared/bench/WORKLOADS.md):
//
// - X.cluster.map.tiny: a trivial function over a million integers, two nodes;
//   X.cluster.map.tiny.local is the local pool on the same work (the ceiling).
// - X.cluster.apply.roundtrip: one apply on idle nodes (p50, p99), with the
//   transactions and WAL flushes one apply costs, counted by the server.
// - X.cluster.recovery.kill: a node holding chunks is SIGKILLed; the time
//   until another node holds every one of them.
// - X.cluster.recovery.partition: the same with the node's network cut
//   (needs the network namespace with-postgres.sh makes as root).
// - X.cluster.soak.claims: the chunk rate (one item per chunk) after a soak
//   of a million chunks over the rate before it.
//
//   PG_DURABLE=1 Cluster/scripts/with-postgres.sh \
//       swift run -c release --package-path Cluster multiprocessing-cluster-bench [--only a,b] [--json FILE]
//
// Needs MULTIPROCESSING_CLUSTER_URL (the script sets it). Nodes are this
// binary again (`--cluster-node URL`), one worker each, on this machine.
// BENCH_SCALE scales the sizes (1 = a million items, a million soak chunks);
// --only takes names without the X.cluster. prefix: map, apply, kill,
// partition, soak.

enum TinySquare: ProcessFunction {
    static func call(_ input: Int) -> Int { input &* input }
}

/// Sleeps for its input in milliseconds: work that holds a worker.
enum Nap: ProcessFunction {
    static func call(_ milliseconds: Int) -> Int {
        usleep(UInt32(milliseconds) * 1000)
        return milliseconds
    }
}

struct Echo: ProcessTask {
    var value: Int
    func run() async throws -> Int { value }
}

if CommandLine.arguments.contains("--cluster-node") {
    // A node of the benchmark ends with it, however it ends.
    let parent = getppid()
    Thread.detachNewThread {
        while getppid() == parent { usleep(200_000) }
        exit(1)
    }
    _ = try await ClusterNode.runFromCommandLine()
    exit(0)
}

// The local pool, the ceiling of X.cluster.map.tiny, is made before anything
// else: a child of a `main.swift` program runs its top-level code up to the
// program's first start of a process (the README's "Top-level code in
// main.swift"), so the benchmark itself must come after it.
let localPool = try ProcessPool(workers: 2)

let environment = ProcessInfo.processInfo.environment
guard let serverURL = environment["MULTIPROCESSING_CLUSTER_URL"] else {
    FileHandle.standardError.write(Data("set MULTIPROCESSING_CLUSTER_URL (Cluster/scripts/with-postgres.sh does)\n".utf8))
    exit(2)
}
func argument(_ flag: String) -> String? {
    guard let index = CommandLine.arguments.firstIndex(of: flag), index + 1 < CommandLine.arguments.count else {
        return nil
    }
    return CommandLine.arguments[index + 1]
}
let only = argument("--only").map { Set($0.split(separator: ",").map(String.init)) }
func selected(_ name: String) -> Bool { only?.contains(name) ?? true }

let scale = Double(environment["BENCH_SCALE"] ?? "1") ?? 1
let items = max(1000, Int(1_000_000 * scale))
let applies = max(20, Int(500 * scale))
let soakChunks = max(10_000, Int(1_000_000 * scale))
let probeChunks = max(2_000, soakChunks / 50)
let recoveries = 5
let schema = "bench_\(getpid())"
let url = serverURL + (serverURL.contains("?") ? "&" : "?") + "schema=\(schema)"
let database = try ClusterDatabase(url: url)

func seconds(_ duration: Duration) -> Double {
    Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
}

func log(_ text: String) {
    FileHandle.standardError.write(Data("bench: \(text)\n".utf8))
}

/// Starts this binary as a node; in a network namespace through `ip netns exec` when one is given.
func startNode(workers: Int, namespace: String? = nil, url: String = url) throws -> Foundation.Process {
    let node = Foundation.Process()
    let arguments = ["--cluster-node", url, "--cluster-workers", "\(workers)"]
    if let namespace {
        node.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        node.arguments = ["ip", "netns", "exec", namespace, CommandLine.arguments[0]] + arguments
    } else {
        node.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
        node.arguments = arguments
    }
    try node.run()
    return node
}

/// The benchmark's own session, for reading the cluster's tables and the server's counters.
let observer = try await PostgresConnection.connect(
    configuration: database.configuration, id: 1, logger: Logger(label: "bench"))

func integers(_ sql: String) async throws -> [Int64] {
    try await observer.query(PostgresQuery(unsafeSQL: sql), logger: Logger(label: "bench")).collect().map {
        try $0.decode(Int64.self)
    }
}

func nodeID(pid: Int32) async throws -> Int64 {
    let deadline = ContinuousClock.now + .seconds(60)
    while ContinuousClock.now < deadline {
        if let id = try? await integers("SELECT id FROM \(schema).node WHERE pid = \(pid)").first { return id }
        try await Task.sleep(for: .milliseconds(20))
    }
    throw MultiprocessingError(.timedOut, "node \(pid) did not join within 60 s")
}

/// Polls every 2 ms until `condition` holds; the time it took from `start`.
func timeUntil(from start: ContinuousClock.Instant, _ condition: () async throws -> Bool) async throws -> Double {
    while try await !condition() {
        guard ContinuousClock.now - start < .seconds(60) else {
            throw MultiprocessingError(.timedOut, "the condition did not hold within 60 s")
        }
        try await Task.sleep(for: .milliseconds(2))
    }
    return seconds(ContinuousClock.now - start)
}

struct Result: Encodable {
    var name: String
    var unit: String
    var better: String
    var median: Double
    var min: Double
    var max: Double
    var reps: Int
    var note: String

    init(_ name: String, unit: String, better: String, _ values: [Double], note: String) {
        let sorted = values.sorted()
        self.name = name
        self.unit = unit
        self.better = better
        median = percentile(sorted, 0.5)
        min = sorted.first ?? .nan
        max = sorted.last ?? .nan
        reps = sorted.count
        self.note = note
    }
}
var results: [Result] = []

func percentile(_ sorted: [Double], _ p: Double) -> Double {
    sorted.isEmpty ? .nan : sorted[Swift.min(sorted.count - 1, Int(Double(sorted.count - 1) * p))]
}

/// The server's count of committed transactions in this database and of WAL flushes.
func serverCounters() async throws -> (transactions: Int64, walSyncs: Int64) {
    // Backends report their counters when idle, at most once a second.
    try await Task.sleep(for: .milliseconds(1500))
    _ = try await observer.query("SELECT pg_stat_clear_snapshot()", logger: Logger(label: "bench")).collect()
    let transactions = try await integers(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")[0]
    let walSyncs = try await integers("SELECT wal_sync FROM pg_stat_wal")[0]
    return (transactions, walSyncs)
}

let synchronousCommit = try await observer.query("SHOW synchronous_commit", logger: Logger(label: "bench"))
    .collect().first!.decode(String.self)
log("synchronous_commit=\(synchronousCommit), schema \(schema)")

/// Every node started, killed at the end.
let nodes = Mutex<[Int32]>([])
defer { for pid in nodes.withLock({ $0 }) { kill(pid, SIGKILL) } }

try await withClusterPool(database: database) { pool in
    for _ in 0..<2 {
        let node = try startNode(workers: 1)
        nodes.withLock { $0.append(node.processIdentifier) }
        _ = try await nodeID(pid: node.processIdentifier)
    }
    while pool.workerCount < 2 { try await Task.sleep(for: .milliseconds(100)) }
    _ = try await pool.apply(Echo(value: 0))

    if selected("map") {
        var rates: [Double] = []
        for _ in 0..<3 {
            let start = ContinuousClock.now
            let count = try await pool.map(TinySquare.self, 0..<items).collect().count
            precondition(count == items)
            rates.append(Double(items) / seconds(ContinuousClock.now - start))
            log("map.tiny \(Int(rates.last!)) items/s")
        }
        results.append(
            Result(
                "X.cluster.map.tiny", unit: "items/s", better: "higher", rates,
                note: "\(items) integers squared, default chunks, two nodes of one worker, "
                    + "driver and server on the same 2 cores, synchronous_commit=\(synchronousCommit)"))
    }

    if selected("apply") {
        // The background (heartbeats, reapers, the reader's polls) over the
        // same time, measured while idle, is taken off the apply's count.
        let idleStart = try await serverCounters()
        let idleBegan = ContinuousClock.now
        var times: [Double] = []
        try await Task.sleep(for: .seconds(3))
        let idleEnd = try await serverCounters()
        let idleSeconds = seconds(ContinuousClock.now - idleBegan)
        let before = try await serverCounters()
        let began = ContinuousClock.now
        for index in 0..<applies {
            let start = ContinuousClock.now
            let value = try await pool.apply(Echo(value: index))
            precondition(value == index)
            times.append(seconds(ContinuousClock.now - start) * 1000)
        }
        let after = try await serverCounters()
        let busySeconds = seconds(ContinuousClock.now - began)
        let background = busySeconds / idleSeconds
        let transactions =
            (Double(after.transactions - before.transactions)
                - background * Double(idleEnd.transactions - idleStart.transactions)) / Double(applies)
        let syncs =
            (Double(after.walSyncs - before.walSyncs) - background * Double(idleEnd.walSyncs - idleStart.walSyncs))
            / Double(applies)
        let sorted = times.sorted()
        log("apply p50 \(percentile(sorted, 0.5)) ms, p99 \(percentile(sorted, 0.99)) ms")
        results.append(
            Result(
                "X.cluster.apply.roundtrip", unit: "ms", better: "lower", times,
                note: "one apply on idle nodes, synchronous_commit=\(synchronousCommit); "
                    + "p99 \(String(format: "%.2f", percentile(sorted, 0.99))) ms; "
                    + "per apply the server counted \(String(format: "%.1f", transactions)) transactions "
                    + "and \(String(format: "%.1f", syncs)) WAL flushes (background taken off)"))
    }

    if selected("soak") {
        /// Chunks of one item each per second over a map of `count`.
        func chunkRate(_ count: Int, marks: Int = 1) async throws -> [Double] {
            var rates: [Double] = []
            var start = ContinuousClock.now
            var seen = 0
            for try await _ in pool.mapUnordered(TinySquare.self, 0..<count, chunkSize: 1) {
                seen += 1
                if seen % (count / marks) == 0 {
                    rates.append(Double(count / marks) / seconds(ContinuousClock.now - start))
                    start = ContinuousClock.now
                }
            }
            return rates
        }
        let fresh = try await chunkRate(probeChunks)[0]
        log("soak: fresh \(Int(fresh)) chunks/s")
        let during = try await chunkRate(soakChunks, marks: 10)
        log("soak: during \(during.map { Int($0) })")
        let end = try await chunkRate(probeChunks)[0]
        let sizes = try await integers(
            "SELECT pg_total_relation_size('\(schema).task') + pg_total_relation_size('\(schema).result')")[0]
        log("soak: end \(Int(end)) chunks/s; tables \(sizes / 1024) KiB")
        results.append(
            Result(
                "X.cluster.soak.claims", unit: "ratio", better: "higher", [end / fresh],
                note: "chunks of one item per second after \(soakChunks) chunks over before: "
                    + "\(Int(end)) / \(Int(fresh)); each tenth of the soak: \(during.map { Int($0) }); "
                    + "task and result tables \(sizes / 1024) KiB after"))
    }

    // The recoveries need nodes that hold nothing: the two nodes leave.
    if selected("kill") || selected("partition") {
        for pid in nodes.withLock({ $0 }) { kill(pid, SIGTERM) }
        while try await integers("SELECT count(*) FROM \(schema).node").first != 0 {
            try await Task.sleep(for: .milliseconds(20))
        }
    }

    /// A node holding two chunks is stopped by `cut`; the time until a new
    /// node of two idle workers holds both.
    func recovery(
        namespace: String?, nodeURL: String, cut: @Sendable (Foundation.Process) throws -> Void,
        mend: @Sendable () throws -> Void
    ) async throws -> Double {
        let victim = try startNode(workers: 1, namespace: namespace, url: nodeURL)
        defer { kill(victim.processIdentifier, SIGKILL) }
        let victimID = try await nodeID(pid: victim.processIdentifier)
        let run = Task { for try await _ in pool.mapUnordered(Nap.self, [600_000, 600_000], chunkSize: 1) {} }
        defer { run.cancel() }
        // It claims a chunk for its idle worker and one ahead.
        var held: [Int64] = []
        while held.count < 2 {
            held = try await integers("SELECT chunk FROM \(schema).task WHERE node_id = \(victimID)")
            try await Task.sleep(for: .milliseconds(5))
        }
        let survivor = try startNode(workers: 2)
        nodes.withLock { $0.append(survivor.processIdentifier) }
        let survivorID = try await nodeID(pid: survivor.processIdentifier)
        try await Task.sleep(for: .milliseconds(300))
        let start = ContinuousClock.now
        try cut(victim)
        let elapsed = try await timeUntil(from: start) {
            let moved = try await integers(
                "SELECT count(*) FROM \(schema).task WHERE node_id = \(survivorID) AND chunk = ANY('{\(held.map(String.init).joined(separator: ","))}')"
            )
            return moved.first == Int64(held.count)
        }
        kill(victim.processIdentifier, SIGKILL)
        try mend()
        run.cancel()
        _ = await run.result
        kill(survivor.processIdentifier, SIGTERM)
        // The survivor drains and leaves; the next round starts from two nodes.
        while try await integers("SELECT count(*) FROM \(schema).node WHERE id = \(survivorID)").first != 0 {
            try await Task.sleep(for: .milliseconds(20))
        }
        return elapsed
    }

    if selected("kill") {
        var times: [Double] = []
        for _ in 0..<recoveries {
            times.append(
                try await recovery(
                    namespace: nil, nodeURL: url, cut: { kill($0.processIdentifier, SIGKILL) }, mend: {}) * 1000)
            log("recovery.kill \(times.last!) ms")
        }
        results.append(
            Result(
                "X.cluster.recovery.kill", unit: "ms", better: "lower", times,
                note: "a node holding two chunks SIGKILLed: until an idle node holds both"))
    }

    if selected("partition"), let namespace = environment["MULTIPROCESSING_TEST_NETNS"],
        let namespaceURL = environment["MULTIPROCESSING_TEST_NETNS_URL"],
        let partition = environment["MULTIPROCESSING_TEST_PARTITION"]
    {
        @Sendable func link(_ state: String) throws {
            let script = Foundation.Process()
            script.executableURL = URL(fileURLWithPath: partition)
            script.arguments = [state]
            try script.run()
            script.waitUntilExit()
        }
        let nodeURL = namespaceURL + (namespaceURL.contains("?") ? "&" : "?") + "schema=\(schema)"
        var times: [Double] = []
        for _ in 0..<recoveries {
            times.append(
                try await recovery(
                    namespace: namespace, nodeURL: nodeURL, cut: { _ in try link("down") }, mend: { try link("up") })
                    * 1000)
            log("recovery.partition \(times.last!) ms")
        }
        results.append(
            Result(
                "X.cluster.recovery.partition", unit: "ms", better: "lower", times,
                note: "a node holding two chunks cut off (its veth link down): until an idle node holds both"))
    } else if selected("partition") {
        log("recovery.partition skipped: it needs the network namespace with-postgres.sh makes as root")
    }

}

if selected("map") {
    // The local pool on the same work, as the ceiling.
    var rates: [Double] = []
    for _ in 0..<3 {
        let start = ContinuousClock.now
        _ = try await localPool.map(TinySquare.self, 0..<items).collect()
        rates.append(Double(items) / seconds(ContinuousClock.now - start))
    }
    results.append(
        Result(
            "X.cluster.map.tiny.local", unit: "items/s", better: "higher", rates,
            note: "the local ProcessPool of two workers on the same map: the ceiling"))
}
localPool.close()
localPool.join()
try await observer.close().get()

struct Document: Encodable {
    var tool = "multiprocessing-cluster-bench"
    var schema = 1
    var machine: [String: String]
    var params: [String: Int]
    var results: [Result]
}
let document = Document(
    machine: ["nproc": "\(ProcessInfo.processInfo.activeProcessorCount)"],
    params: ["items": items, "applies": applies, "soak_chunks": soakChunks, "probe_chunks": probeChunks],
    results: results)
let encoder = JSONEncoder()
encoder.outputFormatting = [.sortedKeys]
let json = try encoder.encode(document)
print(String(decoding: json, as: UTF8.self))
if let path = argument("--json") {
    try json.write(to: URL(fileURLWithPath: path))
}
