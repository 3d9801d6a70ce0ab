// Programs the tests run as separate executables, for what only a whole
// program shows: what happens when `main` returns, at exit, at startup.
//
//     multiprocessing-test-programs <scenario> [arguments...]
#if canImport(Glibc)
    import Glibc
#endif
import Logging
import Multiprocessing

// Top-level constants, as every Swift script keeps them: a child sees their
// values because it runs this top-level code too, up to where the program
// first starts a process.
let answer = 20_000
let greeting = "hello from main.swift"
let table = ["one": 1, "two": 2]

/// Reads the top-level constants.
struct ReadGlobals: ProcessTask {
    func run() -> String { "\(answer) \(greeting) \(table["two"] ?? 0)" }
}

/// Sleeps, then creates the file at `path`.
struct TouchLater: ProcessTask {
    var path: String
    var milliseconds: Int
    func run() {
        usleep(useconds_t(milliseconds * 1000))
        let fd = open(path, O_CREAT | O_WRONLY, 0o644)
        if fd >= 0 { close(fd) }
    }
}

struct Nap: ProcessTask {
    func run() { usleep(100_000) }
}

nonisolated(unsafe) var poolAtExit: ProcessPool?

/// Registers an exit handler in the child and leaves output unflushed: both
/// must show at the child's exit.
struct RegistersExitHandler: ProcessTask {
    func run() {
        atexit {
            print("child exit handler ran in \(currentProcess.name)")
        }
        print("unflushed output of \(currentProcess.name); ", terminator: "")
    }
}

/// Waits for a signal, for ever.
struct PauseForever: ProcessTask {
    func run() { while true { pause() } }
}

/// Says which start method started the process that runs it.
struct ReportStartedBy: ProcessTask {
    func run() -> String { StartMethod.current?.description ?? "none" }
}

/// Throws, for the error a child prints.
struct FailsLoudly: ProcessTask {
    struct Refusal: Error, CustomStringConvertible {
        var description: String { "the input was refused" }
    }
    func run() throws { throw Refusal() }
}

let arguments = CommandLine.arguments.dropFirst()
switch arguments.first {
case "pool-exit-pending":
    // Submits a task and returns from main without closing the pool: the
    // task must still run before the program exits.
    let pool = try ProcessPool(workers: 1)
    _ = try pool.submit(TouchLater(path: arguments.dropFirst().first!, milliseconds: 500))
    print("submitted; returning from main")
case "pool-submit-during-exit":
    // An exit handler registered before the pool runs after the pool's own:
    // a submit there is refused, with an error that says why.
    atexit {
        do {
            _ = try poolAtExit!.submit(Nap())
            print("accepted")
        } catch {
            print("refused: \(error)")
        }
        fflush(nil)
    }
    poolAtExit = try ProcessPool(workers: 1)
    _ = try poolAtExit!.submit(Nap())
case "child-exit":
    // The parent's handler is inherited by a forked child and registered
    // again by a spawned child running this top-level code: it must run once.
    atexit {
        print("parent exit handler ran in \(currentProcess.name)")
    }
    for method in [StartMethod.spawn, .forkserver, .fork(allowingOtherThreads: true)] {
        let child = try ChildProcess(RegistersExitHandler(), name: "exiting-\(method)", startMethod: method)
        try child.start()
        _ = try child.join()
    }
    let loud = try ChildProcess(FailsLoudly(), name: "loud")
    try loud.start()
    _ = try loud.join()
    let quiet = try ChildProcess(FailsLoudly(), name: "quiet")
    quiet.printsErrors = false
    try quiet.start()
    _ = try quiet.join()
    print("children done")
case "start-method-default":
    try StartMethod.setDefault(.spawn)
    do {
        try StartMethod.setDefault(.forkserver)
        print("set twice")
    } catch {
        print("second set refused: \(error)")
    }
    let child = try ChildProcess(ReportStartedBy())
    try child.start()
    _ = try child.join()
    print("default \(StartMethod.default); child started by \(try child.value)")
case "main-globals":
    // Printed once: a child's output before the takeover is silenced.
    print("before the first process")
    for method in [StartMethod.spawn, .forkserver] {
        let child = try ChildProcess(ReadGlobals(), startMethod: method)
        try child.start()
        _ = try child.join()
        print("child \(method): \(try child.value)")
        let pool = try ProcessPool(workers: 2, options: PoolOptions(startMethod: method))
        print("pool \(method): \(try pool.submit(ReadGlobals()).get())")
        pool.close()
        pool.join()
    }
case "started-with-signals-blocked":
    // The test starts this program with SIGCHLD and SIGTERM blocked and
    // SIGTERM ignored, as a parent may leave them: the processes the library
    // starts must not inherit that.
    var mask = sigset_t()
    pthread_sigmask(SIG_BLOCK, nil, &mask)
    print("started with SIGCHLD blocked: \(sigismember(&mask, SIGCHLD) == 1)")
    let pool = try ForkingPool(workers: 2) { (n: Int) in n + 1 }
    print("forking pool map: \(try pool.map(Array(0..<10), chunkSize: 1).get() == Array(1...10))")
    pool.close()
    pool.join()
    print("forking pool joined")
    let quick = try ChildProcess { 42 }
    try quick.start()
    _ = try quick.join()
    print("fork child value: \(try quick.value)")
    let forked = try ChildProcess { () async throws -> Void in
        while true { pause() }
    }
    try forked.start()
    try forked.terminate()
    _ = try forked.join()
    print("fork child terminated: \(forked.terminationStatus.map(String.init(describing:)) ?? "running")")
    let served = try ChildProcess(PauseForever(), startMethod: .forkserver)
    try served.start()
    try served.terminate()
    _ = try served.join()
    print("forkserver child terminated: \(served.terminationStatus.map(String.init(describing:)) ?? "running")")
case "forking-pool-recycles":
    // Workers that exit normally (recycled after one item, then at close)
    // must exit cleanly: the test reads this program's standard error, and
    // the pool logs each worker's exit status.
    var logger = Logger(label: "pool") { _ in PrintingLogHandler() }
    logger.logLevel = .debug
    let options = PoolOptions(maxTasksPerWorker: 1, logger: logger)
    let pool = try ForkingPool(workers: 2, options: options) { (n: Int) in n * n }
    let squares = try pool.map(Array(0..<20), chunkSize: 1).get()
    pool.close()
    pool.join()
    print("squares \(squares == (0..<20).map { $0 * $0 })")
default:
    print("unknown scenario: \(arguments.first ?? "none")")
    exit(2)
}
