#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import Multiprocessing

/// Python's `def work(num)`.
struct Work: ProcessTask {
    var number: Int

    func run() {
        print("work(\(number)) in \(currentProcess.name): pid \(getpid()), parent pid \(parentProcess!.pid)")
    }
}

/// Sleeps, so that a join with a timeout returns before it ends.
struct Nap: ProcessTask {
    var milliseconds: Int

    func run() async throws {
        try await Task.sleep(for: .milliseconds(milliseconds))
    }
}

/// Python's `class MyProcess(Process)` with its own `run()`.
final class Greeter: ProcessTask {
    let index: Int

    init(index: Int) { self.index = index }

    func run() {
        print("Greeter \(index) running in pid \(getpid())")
    }
}

/// The pool section's task: sleeps a second, then prints its number.
struct SleepAndPrint: ProcessTask {
    var number: Int

    func run() async throws {
        try await Task.sleep(for: .seconds(1))
        print("task \(number) done in \(currentProcess.name), pid \(getpid())")
    }
}

nonisolated(unsafe) var counter = 0

/// Increments the child's own copy of the global `counter`.
struct IncrementGlobal: ProcessTask {
    func run() {
        counter += 1
        print("child \(getpid()): counter = \(counter)")
    }
}

/// Increments a counter in shared memory, holding its lock.
struct IncrementShared: ProcessTask {
    var counter: SharedValue<Int>

    func run() throws {
        let now = try counter.withLock { value -> Int in
            value += 1
            return value
        }
        print("child \(getpid()): shared counter = \(now)")
    }
}

/// Puts its number into a queue shared with the parent.
struct PutNumber: ProcessTask {
    var queue: ProcessQueue<Int>
    var number: Int

    func run() throws {
        try queue.put(number)
        print("child \(getpid()) put \(number)")
    }
}

/// Appends lines to a file shared by several processes.
struct AppendLines: ProcessTask {
    var path: String
    var writer: Int
    var lines: Int

    func run() throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        guard fd >= 0 else { throw TourError(message: "cannot open \(path)") }
        defer { close(fd) }
        for line in 0..<lines {
            // One write per line: O_APPEND makes each write land whole at the end.
            let text = Array("writer \(writer) (pid \(getpid())): line \(line)\n".utf8)
            _ = text.withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        }
    }
}

struct TourError: Error, Codable {
    var message: String
}

func readLines(_ path: String) throws -> [String] {
    let fd = open(path, O_RDONLY)
    guard fd >= 0 else { throw TourError(message: "cannot read \(path)") }
    defer { close(fd) }
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = read(fd, &chunk, chunk.count)
        if count <= 0 { break }
        bytes += chunk[..<count]
    }
    return String(decoding: bytes, as: UTF8.self).split(separator: "\n").map(String.init)
}
