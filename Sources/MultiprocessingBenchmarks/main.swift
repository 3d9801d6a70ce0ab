// The benchmark harness: the workloads of shared/bench/WORKLOADS.md, measured
// with this library's own API, printed as JSON schema 1.
//
//     swift run -c release multiprocessing-bench --json results.json [--only W1,W4]
//
// The harness stays single-threaded (it blocks instead of awaiting) so that
// the fork start method is measured as users of a single-threaded program get it.
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import Multiprocessing

var jsonPath: String?
var groups: [String] = []
var arguments = CommandLine.arguments.dropFirst().makeIterator()
while let argument = arguments.next() {
    switch argument {
    case "--json": jsonPath = arguments.next()
    case "--only": groups = (arguments.next() ?? "").split(separator: ",").map(String.init)
    case "-h", "--help":
        print("usage: multiprocessing-bench [--json FILE] [--only W1,W4,...]   (BENCH_SCALE=0.2 for a quick run)")
        exit(0)
    default:
        printToStandardError("unknown argument \(argument); see --help")
        exit(2)
    }
}

let only = groups
/// Whether a workload or group is asked for: `--only W1` selects the group,
/// `--only W1.process.fork` that workload alone (not `W1.process.forkserver`).
func selected(_ name: String) -> Bool {
    only.isEmpty || only.contains { name == $0 || name.hasPrefix($0 + ".") || $0.hasPrefix(name + ".") }
}

var report = Report()
report.params = [("scale", "\(scale)"), ("build", isDebugBuild() ? "debug" : "release")]
if isDebugBuild() { printToStandardError("warning: a debug build; measure with -c release") }

if selected("W1") { try processStarts(&report) }
rawForkFloor(&report)
if selected("W4") {
    try pipeMessages(&report)
    try queueWorkloads(&report)
}
if selected("W5") { try pipeBulk(&report) }
if selected("W5") || selected("X.shm") { try sharedMemoryWorkloads(&report) }
if selected("X.lock") { try lockWorkloads(&report) }
if selected("X.wire") { try wireWorkloads(&report) }
// The pool workloads run last: they start threads, and W1.process.fork needs a single-threaded harness.
if ["W2", "W3", "W6", "W7", "X.pool"].contains(where: selected) { try poolWorkloads(&report) }

let json = report.json()
if let jsonPath {
    guard let file = fopen(jsonPath, "w") else {
        printToStandardError("cannot write \(jsonPath)")
        exit(1)
    }
    fputs(json, file)
    fclose(file)
} else {
    print(json, terminator: "")
}

func isDebugBuild() -> Bool {
    var debug = false
    assert(
        {
            debug = true; return true
        }())
    return debug
}
