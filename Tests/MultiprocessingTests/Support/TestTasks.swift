#if canImport(Glibc)
    import Glibc
#endif
import Multiprocessing
import Synchronization

// Task types the tests run in children. They are internal (not private) so
// that children can find them by name.

struct Square: ProcessTask {
    var number: Int
    func run() -> Int { number * number }
}

struct AsyncSquare: ProcessTask {
    var number: Int
    func run() async throws -> Int {
        try await Task.sleep(for: .milliseconds(1))
        return number * number
    }
}

/// Returns `count` bytes, byte `i` being `i % 253`.
struct ManyBytes: ProcessTask {
    var count: Int
    func run() -> [UInt8] { (0..<count).map { UInt8($0 % 253) } }
}

struct Nothing: ProcessTask {
    func run() {}
}

struct Greeting: Codable, Equatable, Sendable {
    var text: String
    var numbers: [Int]
}

struct MakeGreeting: ProcessTask {
    var name: String
    func run() -> Greeting { Greeting(text: "hello \(name) from \(currentProcess.name)", numbers: [1, 2, 3]) }
}

struct Outer {
    struct Nested: ProcessTask {
        var value: String
        func run() -> String { value.uppercased() }
    }
}

struct Generic<Value: Codable & Sendable>: ProcessTask {
    var value: Value
    func run() -> [Value] { [value, value] }
}

struct TaskFailure: Error, Codable, Equatable {
    var code: Int
    var reason: String
}

struct ThrowsCodable: ProcessTask {
    func run() throws { throw TaskFailure(code: 42, reason: "thrown in the child") }
}

struct PlainError: Error, CustomStringConvertible {
    var description: String { "a plain error" }
}

struct ThrowsPlain: ProcessTask {
    func run() throws -> Int { throw PlainError() }
}

/// Ends the child in one of the ways a real worker dies.
struct Crash: ProcessTask {
    enum Way: String, Codable { case sigkill, abort, segfault, exit3 }
    var way: Way

    func run() {
        switch way {
        case .sigkill: raise(SIGKILL)
        case .abort: abort()
        case .segfault:
            let pointer = UnsafeMutablePointer<Int>(bitPattern: 8)!
            pointer.pointee = 1
        case .exit3: exit(3)
        }
    }
}

struct Sleep: ProcessTask {
    var milliseconds: Int
    func run() { usleep(useconds_t(milliseconds * 1000)) }
}

/// Sleeps forever, ignoring SIGTERM, so only SIGKILL ends it.
struct StubbornSleeper: ProcessTask {
    func run() {
        signal(SIGTERM, SIG_IGN)
        while true { pause() }
    }
}

struct EchoBytes: ProcessTask {
    var connection: Connection
    func run() throws {
        while true {
            let message: [UInt8]
            do { message = try connection.receiveBytes() } catch { return }
            try connection.sendBytes(message)
        }
    }
}

struct SendValues: ProcessTask {
    var connection: Connection
    var count: Int
    func run() throws {
        for index in 0..<count { try connection.send(Greeting(text: "message \(index)", numbers: [index])) }
        connection.close()
    }
}

/// Reports who it is and who its parent is.
struct WhoAmI: ProcessTask {
    struct Answer: Codable, Sendable {
        var name: String
        var pid: Int32
        var parentPID: Int32?
        var parentName: String?
        var bootVariable: Bool
    }

    func run() -> Answer {
        Answer(
            name: currentProcess.name, pid: getpid(), parentPID: parentProcess?.pid, parentName: parentProcess?.name,
            bootVariable: getenv("SWIFT_MULTIPROCESSING_BOOT") != nil)
    }
}

/// Counts its own open descriptors above standard error.
struct CountDescriptors: ProcessTask {
    func run() -> [Int32] { openDescriptors().filter { $0 > 2 } }
}

/// In a spawned (single-threaded) child, runs a closure in a forked grandchild.
struct ForkFromChild: ProcessTask {
    var number: Int
    func run() throws -> Int {
        let captured = NotCodable(value: number)
        let child = try ChildProcess(allowingOtherThreads: forksAllowOtherThreads) { captured.value * 10 }
        try child.start()
        try child.join()
        return try child.value
    }
}

/// In a single-threaded child: forks a child for `ManyBytes(count:)` and
/// one for a closure returning as many bytes, and checks both results.
struct ManyBytesFromForks: ProcessTask {
    var count: Int
    func run() throws -> Bool {
        let expected = ManyBytes(count: count).run()
        let task = try ChildProcess(
            ManyBytes(count: count), startMethod: .fork(allowingOtherThreads: forksAllowOtherThreads))
        let closure = try ChildProcess(allowingOtherThreads: forksAllowOtherThreads) { expected.reversed() as [UInt8] }
        for child in [task as AnyChildProcess, closure] {
            try child.start()
            guard try child.join(timeout: .seconds(30)) else { return false }
        }
        return try task.value == expected && closure.value == expected.reversed()
    }
}

final class NotCodable: Sendable {
    let value: Int
    init(value: Int) { self.value = value }
}

/// Starts, with posix_spawn, a shell that starts a sleep in the background
/// and becomes another; reports both pids and waits forever.
struct SpawnSleepers: ProcessTask {
    var report: Connection
    func run() throws {
        var pid: pid_t = 0
        let words: [String] = ["/bin/sh", "-c", "sleep 61 & exec sleep 62"]
        let argv: [UnsafeMutablePointer<CChar>?] = words.map { strdup($0) } + [nil]
        defer { for pointer in argv { free(pointer) } }
        guard posix_spawn(&pid, "/bin/sh", nil, nil, argv, environ) == 0 else {
            throw MultiprocessingError(.systemCall, "posix_spawn of /bin/sh")
        }
        var background: [Int32] = []
        for _ in 0..<200 where background.isEmpty {
            usleep(10_000)
            background = childrenOf(pid)
        }
        try report.send([pid] + background)
        while true { pause() }
    }
}

/// The children of a process, from /proc.
func childrenOf(_ pid: Int32) -> [Int32] {
    let fd = open("/proc/\(pid)/task/\(pid)/children", O_RDONLY)
    guard fd >= 0 else { return [] }
    defer { close(fd) }
    var bytes = [UInt8](repeating: 0, count: 4096)
    let count = read(fd, &bytes, bytes.count)
    guard count > 0 else { return [] }
    return String(decoding: bytes[..<count], as: UTF8.self).split(separator: " ").compactMap { Int32($0) }
}

/// Runs ``SpawnSleepers`` in a spawned child, a fork-server child and a pool
/// worker, and waits forever.
struct StartPlainDescendants: ProcessTask {
    var report: Connection
    func run() throws {
        // The forks first, while this spawned child runs no thread of its own.
        let forked = try ChildProcess(
            SpawnSleepers(report: report), startMethod: .fork(allowingOtherThreads: forksAllowOtherThreads))
        try forked.start()
        let report = report
        let forkingPool = try ForkingPool(workers: 1, allowingOtherThreads: forksAllowOtherThreads) { (_: Int) -> Int in
            try SpawnSleepers(report: report).run()
            return 0
        }
        _ = try forkingPool.submit(0)
        for method in [StartMethod.spawn, .forkserver] {
            let child = try ChildProcess(SpawnSleepers(report: report), startMethod: method)
            try child.start()
        }
        let pool = try ProcessPool(workers: 1)
        _ = try pool.submit(SpawnSleepers(report: report))
        while true { pause() }
    }
}

/// Starts grandchildren with every start method, reports their pids, and waits forever.
struct StartGrandchildren: ProcessTask {
    var report: Connection
    func run() throws {
        var pids: [Int32] = []
        for method in [StartMethod.spawn, .forkserver, .fork(allowingOtherThreads: forksAllowOtherThreads)] {
            let child = try ChildProcess(StubbornSleeper(), startMethod: method)
            try child.start()
            pids.append(child.pid!)
        }
        try report.send(pids)
        while true { pause() }
    }
}

/// Sends `count` values inside one batch.
struct SendBatched: ProcessTask {
    var connection: Connection
    var count: Int
    func run() throws {
        try connection.withBatch { batch in
            for index in 0..<count { try batch.send(index) }
            try batch.sendBytes([UInt8](repeating: 9, count: 100_000))
        }
        connection.close()
    }
}

/// In a single-threaded (spawned) child: forks while a pool's completion
/// callback runs on the engine thread, and forks from such a callback.
/// Returns whether the first fork waited for the callback to end, and the
/// exit code of the child forked from the callback.
struct ForkDuringEngineRound: ProcessTask {
    final class State: Sendable {
        let phase = Atomic(0)
        let forkedCode = Atomic(-1)
    }

    func run() throws -> [Int] {
        let pool = try ProcessPool(workers: 1)
        let state = State()
        let slow = try pool.submit(Square(number: 2)) { _ in
            state.phase.store(1, ordering: .sequentiallyConsistent)
            usleep(300_000)
            state.phase.store(2, ordering: .sequentiallyConsistent)
        }
        while state.phase.load(ordering: .sequentiallyConsistent) == 0 { usleep(1_000) }
        let phaseAtFork: Int
        switch try forkProcess(allowingOtherThreads: forksAllowOtherThreads) {
        case .child: _exit(0)
        case .parent(let pid):
            phaseAtFork = state.phase.load(ordering: .sequentiallyConsistent)
            _ = try waitForProcess(pid)
        }
        _ = try slow.get()
        let forking = try pool.submit(Square(number: 3)) { _ in
            guard case .parent(let pid) = try? forkProcess(allowingOtherThreads: true) else { _exit(7) }
            if case .exited(let code)? = try? waitForProcess(pid) {
                state.forkedCode.store(Int(code), ordering: .sequentiallyConsistent)
            }
        }
        _ = try forking.get()
        pool.close()
        pool.join()
        return [phaseAtFork, state.forkedCode.load(ordering: .sequentiallyConsistent)]
    }
}
