#if canImport(Glibc)
    import Glibc
#endif
import Multiprocessing

/// Work that starts children with a given start method and reports what
/// they saw, for a test to check under every start method.
protocol Scenario: Codable, Sendable {
    associatedtype Outcome: Codable & Sendable
    func run(startingChildrenWith method: StartMethod) throws -> Outcome
}

/// The start methods a scenario runs under.
let everyStartMethod: [StartMethod] = [.spawn, .forkserver, .fork]

/// Runs `scenario` with children started by `method`: in this process for
/// spawn and forkserver; for fork, in a spawned child, since the test runner
/// has threads and cannot fork safely, but a spawned child has none.
func outcome<S: Scenario>(of scenario: S, startingChildrenWith method: StartMethod) throws -> S.Outcome {
    guard method == .fork else { return try scenario.run(startingChildrenWith: method) }
    let driver = try ChildProcess(ForkingScenario(scenario: scenario), startMethod: .spawn)
    try driver.start()
    try driver.join()
    return try driver.value
}

/// Runs a scenario whose children are forked, in a single-threaded child.
struct ForkingScenario<S: Scenario>: ProcessTask {
    var scenario: S
    func run() throws -> S.Outcome { try scenario.run(startingChildrenWith: .fork(allowingOtherThreads: forksAllowOtherThreads)) }
}

/// The code of the `MultiprocessingError` that `body` throws; "none" when it
/// throws nothing, the error's type for another error.
func errorCode(_ body: () throws -> Void) -> String {
    do {
        try body()
        return "none"
    } catch let error as MultiprocessingError {
        return error.code.description
    } catch {
        return String(describing: type(of: error))
    }
}

/// The error code a wait ended with, and how long it took.
struct TimedWait: Codable, Sendable {
    var error: String
    var seconds: Double
}

/// Runs `body`; the error code it ended with, and how long it took.
func timed(_ body: () throws -> Void) -> TimedWait {
    let start = ContinuousClock.now
    let error = errorCode(body)
    return TimedWait(error: error, seconds: seconds(since: start))
}

/// Seconds since `start`.
func seconds(since start: ContinuousClock.Instant) -> Double {
    let elapsed = ContinuousClock.now - start
    return Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18
}

/// Polls `condition` every millisecond for at most `timeout`; whether it became true.
func eventually(within timeout: Duration = .seconds(20), _ condition: () throws -> Bool) rethrows -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if try condition() { return true }
        usleep(1000)
    }
    return try condition()
}

/// Runs `body` on a new thread of this process and waits for it to end.
func onAnotherThread(_ body: @escaping () -> Void) {
    final class Work {
        let body: () -> Void
        init(_ body: @escaping () -> Void) { self.body = body }
    }
    let work = Unmanaged.passRetained(Work(body)).toOpaque()
    var thread = pthread_t()
    let result = pthread_create(
        &thread, nil,
        { raw in
            let work = Unmanaged<Work>.fromOpaque(raw!).takeRetainedValue()
            work.body()
            return nil
        }, work)
    precondition(result == 0, "pthread_create failed: \(result)")
    pthread_join(thread, nil)
}

/// The calling thread's kernel id, from /proc/thread-self (a link to "<pid>/task/<tid>").
func currentThreadID() -> Int32 {
    var bytes = [CChar](repeating: 0, count: 64)
    let count = readlink("/proc/thread-self", &bytes, bytes.count - 1)
    precondition(count > 0, "readlink /proc/thread-self failed")
    let link = String(decoding: bytes[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    return Int32(link.split(separator: "/").last!)!
}
