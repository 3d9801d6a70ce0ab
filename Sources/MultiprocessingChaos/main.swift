// The fault-injection program: workers dying every way, hung tasks and
// timeouts, the parent killed, the fork server killed, leak counts, garbage
// in a connection. Each trial's outcome is checked against the expected one.
//
//     swift run -c release multiprocessing-chaos [--trials N] [--only FAULT,...]
//         [--expect-failing FAULT,...] [--time-limit SECONDS] [--children-stderr PATH] [--list]
//
// It prints one table and exits with 1 on any wrong outcome, hang or leak
// of a fault not listed in --expect-failing, 2 when its own time limit passes.
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import Multiprocessing

let faults: [Fault] =
    Death.allCases.map(deathFault)
    + [false, true].flatMap { busy in Hang.allCases.map { timeoutFault($0, busy: busy) } }
    + [parentKillFault, forkServerKillFault] + leakFaults + [garbageFault]

struct Options {
    var trials = 100
    var only: [String] = []
    var expectFailing: [String] = []
    var timeLimit = 4 * 3600
    var list = false
    var childrenOutput = "/dev/null"
}

func usage(_ problem: String) -> Never {
    let names = faults.map(\.name).joined(separator: ", ")
    writeError(
        """
        multiprocessing-chaos: \(problem)
        usage: multiprocessing-chaos [--trials N] [--only FAULT,...] [--expect-failing FAULT,...]
                                     [--time-limit SECONDS] [--children-stderr PATH] [--list]
        A FAULT is a name or a prefix of names ("death" is every death/...): \(names)

        """)
    exit(64)
}

func parseOptions(_ arguments: ArraySlice<String>) -> Options {
    var options = Options()
    var rest = arguments
    func value(_ flag: String) -> String {
        guard let value = rest.popFirst() else { usage("\(flag) needs a value") }
        return value
    }
    func names(_ flag: String) -> [String] {
        let names = value(flag).split(separator: ",").map(String.init)
        for name in names where !faults.contains(where: { matches($0.name, name) }) {
            usage("no fault is named \(name)")
        }
        return names
    }
    while let argument = rest.popFirst() {
        switch argument {
        case "--trials":
            guard let trials = Int(value(argument)), trials >= 1 else { usage("--trials needs a count of at least 1") }
            options.trials = trials
        case "--only": options.only += names(argument)
        case "--expect-failing": options.expectFailing += names(argument)
        case "--time-limit":
            guard let limit = Int(value(argument)), limit >= 1 else { usage("--time-limit needs seconds, at least 1") }
            options.timeLimit = limit
        case "--list": options.list = true
        case "--children-stderr": options.childrenOutput = value(argument)
        case "--help", "-h": usage("fault injection for swift-multiprocessing")
        default: usage("unknown argument \(argument)")
        }
    }
    return options
}

/// Where the program's own messages go: standard error as it was before
/// children's crash reports were sent elsewhere.
nonisolated(unsafe) var errorOutput: Int32 = 2

func writeError(_ text: String) {
    var bytes = Array(text.utf8)
    _ = write(errorOutput, &bytes, bytes.count)
}

/// Sends standard error (which children inherit: their crash reports and
/// backtraces, thousands of them) to `path`, keeping the original for the
/// program's own messages.
func redirectChildrenOutput(to path: String) {
    let file = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0o644)
    guard file >= 0 else { return }
    errorOutput = fcntl(2, F_DUPFD_CLOEXEC, 3)
    dup2(file, 2)
    close(file)
}

/// Whether fault `name` is selected by `pattern`: the name itself, or a prefix ending at a "/".
func matches(_ name: String, _ pattern: String) -> Bool {
    name == pattern || name.hasPrefix(pattern.hasSuffix("/") ? pattern : pattern + "/")
}

/// Ends the run when its time limit passes, whatever its trials are doing:
/// a thread of its own, outside Swift's cooperative pool.
func startTimeLimit(seconds: Int) {
    final class Limit {
        let seconds: Int
        init(seconds: Int) { self.seconds = seconds }
    }
    var thread = pthread_t()
    let limit = Unmanaged.passRetained(Limit(seconds: seconds)).toOpaque()
    pthread_create(
        &thread, nil,
        { argument in
            let limit = Unmanaged<Limit>.fromOpaque(argument!).takeRetainedValue()
            let end = ContinuousClock.now + .seconds(limit.seconds)
            while ContinuousClock.now < end { sleep(1) }
            let text = table(tallies.withLock { $0 })
            writeError("\(text)\n\nmultiprocessing-chaos: the time limit of \(limit.seconds) s passed\n")
            _exit(2)
        }, limit)
    pthread_detach(thread)
}

if CommandLine.arguments.dropFirst().first == "--victim" {
    await beVictim()
}

let options = parseOptions(CommandLine.arguments.dropFirst())
let selected = faults.filter { fault in options.only.isEmpty || options.only.contains { matches(fault.name, $0) } }
if options.list {
    for fault in selected { print("\(fault.name)\(String(repeating: " ", count: max(1, 28 - fault.name.count)))\(fault.summary)") }
    exit(0)
}
redirectChildrenOutput(to: options.childrenOutput)
// The fork server and a pool's shared parts live as long as the program: make
// them before the first fault counts descriptors. Spawned children run the
// top-level code up to this first start, so no thread starts before it: a
// thread there would make the clean children refuse to fork, and the fork
// server would not start (its globals could not be kept).
func warmUp(_ child: ChildProcess<Void>) async throws {
    try await child.join()
    try child.close()
    try await withProcessPool(workers: 1) { pool in try await pool.apply(Nothing()) }
    try await Task.sleep(for: .milliseconds(1))  // Dispatch makes its timer descriptor on first use
}
do {
    // The first start comes before the first await: that await starts Swift
    // concurrency's threads, after which the program's fork server could not
    // keep its globals, and a spawned child (which takes over here) could not fork.
    let first = try ChildProcess(Nothing(), startMethod: .forkserver)
    try first.start()
    try await warmUp(first)
} catch {
    writeError("multiprocessing-chaos: the warm-up failed: \(error)\n")
    exit(1)
}
startTimeLimit(seconds: options.timeLimit)
print("multiprocessing-chaos: \(selected.count) faults, \(options.trials) trials each, pid \(getpid())")
fflush(nil)
for fault in selected {
    let known = options.expectFailing.contains { matches(fault.name, $0) }
    let started = ContinuousClock.now
    await run(fault, trials: options.trials, known: known)
    let tally = tallies.withLock { $0.last! }
    print(
        "  \(fault.name): \(tally.correct)/\(tally.trials) correct, \(tally.wrong) wrong, \(tally.hangs) hangs, "
            + "\(tally.leaked.count) leaked, \(Int(seconds(ContinuousClock.now - started))) s")
    fflush(nil)
}
let results = tallies.withLock { $0 }
print("\n" + table(results))
let unexpected = results.filter { $0.failed && !$0.known }
let fixed = results.filter { !$0.failed && $0.known }
if !fixed.isEmpty {
    print("\nexpected to fail but passed (take them off --expect-failing): \(fixed.map(\.fault).joined(separator: ", "))")
}
if !unexpected.isEmpty {
    print("\nFAILED: \(unexpected.map(\.fault).joined(separator: ", "))")
    fflush(nil)
    _exit(1)
}
print("\nno unexpected failure")
fflush(nil)
// _exit: a hung trial of an expected-failing fault may still hold a worker.
_exit(0)
