#if canImport(Glibc)
    import Glibc
#endif
import Foundation
import Multiprocessing
import MultiprocessingCluster

// The cluster's benchmarks: X.cluster.map.tiny and X.cluster.apply.roundtrip,
// printed as one JSON document of schema 1 (shared/bench/WORKLOADS.md).
//
//   Cluster/scripts/with-postgres.sh swift run -c release --package-path Cluster multiprocessing-cluster-bench
//
// Needs MULTIPROCESSING_CLUSTER_URL (the script sets it). It starts two nodes
// (this binary again, `--cluster-node URL`), one worker each, on this machine.
// BENCH_SCALE scales the sizes (1 = a million items); --json FILE writes the document there too.

enum TinySquare: ProcessFunction {
    static func call(_ input: Int) -> Int { input &* input }
}

struct Echo: ProcessTask {
    var value: Int
    func run() async throws -> Int { value }
}

if try await ClusterNode.runFromCommandLine() { exit(0) }

guard let url = ProcessInfo.processInfo.environment["MULTIPROCESSING_CLUSTER_URL"] else {
    FileHandle.standardError.write(Data("set MULTIPROCESSING_CLUSTER_URL (Cluster/scripts/with-postgres.sh does)\n".utf8))
    exit(2)
}
let scale = Double(ProcessInfo.processInfo.environment["BENCH_SCALE"] ?? "1") ?? 1
let items = max(1000, Int(1_000_000 * scale))
let applies = max(20, Int(500 * scale))
let schema = "bench_\(getpid())"
let database = try ClusterDatabase(url: url + "?schema=\(schema)")

var nodes: [Foundation.Process] = []
for _ in 0..<2 {
    let node = Foundation.Process()
    node.executableURL = URL(fileURLWithPath: CommandLine.arguments[0])
    node.arguments = ["--cluster-node", url + "?schema=\(schema)", "--cluster-workers", "1"]
    try node.run()
    nodes.append(node)
}
defer { for node in nodes { kill(node.processIdentifier, SIGTERM) } }

struct Result: Encodable {
    var name: String
    var unit: String
    var better: String
    var median: Double
    var min: Double
    var max: Double
    var reps: Int
    var note: String
}
var results: [Result] = []

func percentile(_ sorted: [Double], _ p: Double) -> Double {
    sorted[Swift.min(sorted.count - 1, Int(Double(sorted.count - 1) * p))]
}

try await withClusterPool(database: database) { pool in
    // Wait for both nodes to join.
    let deadline = ContinuousClock.now + .seconds(60)
    while pool.workerCount < 2 && ContinuousClock.now < deadline {
        _ = try await pool.apply(Echo(value: 0))
        try await Task.sleep(for: .milliseconds(200))
    }
    var rates: [Double] = []
    for _ in 0..<3 {
        let start = ContinuousClock.now
        let sum = try await pool.map(TinySquare.self, 0..<items).collect().count
        precondition(sum == items)
        let elapsed = ContinuousClock.now - start
        rates.append(Double(items) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18))
    }
    rates.sort()
    results.append(
        Result(
            name: "X.cluster.map.tiny", unit: "items/s", better: "higher", median: percentile(rates, 0.5),
            min: rates.first!, max: rates.last!, reps: rates.count,
            note: "\(items) integers squared, two nodes of one worker, driver and server on the same 2 cores"))

    var times: [Double] = []
    for index in 0..<applies {
        let start = ContinuousClock.now
        let value = try await pool.apply(Echo(value: index))
        precondition(value == index)
        let elapsed = ContinuousClock.now - start
        times.append(Double(elapsed.components.attoseconds) / 1e15 + Double(elapsed.components.seconds) * 1000)
    }
    times.sort()
    results.append(
        Result(
            name: "X.cluster.apply.roundtrip", unit: "ms", better: "lower", median: percentile(times, 0.5),
            min: times.first!, max: times.last!, reps: times.count,
            note: "one apply on idle nodes; p99 \(String(format: "%.2f", percentile(times, 0.99))) ms; "
                + "3 commits per apply (insert+notify, claim, complete+notify)"))
}

// The local pool on the same work, as the ceiling.
try await withProcessPool(workers: 2) { pool in
    let start = ContinuousClock.now
    _ = try await pool.map(TinySquare.self, 0..<items).collect()
    let elapsed = ContinuousClock.now - start
    let rate = Double(items) / (Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    results.append(
        Result(
            name: "X.cluster.map.tiny.local", unit: "items/s", better: "higher", median: rate, min: rate, max: rate,
            reps: 1, note: "the local ProcessPool of two workers on the same map: the ceiling"))
}

struct Document: Encodable {
    var tool = "multiprocessing-cluster-bench"
    var schema = 1
    var machine: [String: String]
    var params: [String: Int]
    var results: [Result]
}
let document = Document(
    machine: ["nproc": "\(ProcessInfo.processInfo.activeProcessorCount)"],
    params: ["items": items, "applies": applies], results: results)
let encoder = JSONEncoder()
encoder.outputFormatting = [.sortedKeys]
let json = try encoder.encode(document)
print(String(decoding: json, as: UTF8.self))
if let index = CommandLine.arguments.firstIndex(of: "--json"), index + 1 < CommandLine.arguments.count {
    try json.write(to: URL(fileURLWithPath: CommandLine.arguments[index + 1]))
}
