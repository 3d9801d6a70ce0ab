#if canImport(Glibc)
    import Glibc
#endif
import Multiprocessing

enum SquareFunction: ProcessFunction {
    static func call(_ input: Int) -> Int { input * input }
}

struct OddInput: Error, Codable, Equatable {
    var value: Int
}

enum RejectOdd: ProcessFunction {
    static func call(_ input: Int) throws -> Int {
        if input % 2 == 1 { throw OddInput(value: input) }
        return input
    }
}

/// Kills its own worker on the input -1; returns the input otherwise.
enum DieOnMinusOne: ProcessFunction {
    static func call(_ input: Int) -> Int {
        if input == -1 { raise(SIGKILL) }
        return input
    }
}

/// Spins forever (ignoring SIGTERM) on a negative input.
enum SpinOnNegative: ProcessFunction {
    static func call(_ input: Int) -> Int {
        if input < 0 {
            signal(SIGTERM, SIG_IGN)
            while true { usleep(1000) }
        }
        return input
    }
}

/// Sleeps the given milliseconds and returns the worker's pid.
enum SleepThenPID: ProcessFunction {
    static func call(_ milliseconds: Int) -> Int32 {
        usleep(useconds_t(milliseconds * 1000))
        return getpid()
    }
}

enum WorkerPID: ProcessFunction {
    static func call(_ input: Int) -> Int32 { getpid() }
}

nonisolated(unsafe) var initializerRuns = 0

struct SetUpWorker: WorkerInitializer {
    var base: Int
    func makeState() -> Int {
        initializerRuns += 1
        return base + initializerRuns * 1000
    }
}

struct FailingSetUp: WorkerInitializer {
    func makeState() throws -> Int { throw OddInput(value: 7) }
}

/// Returns the worker's state, its index and its pid.
enum ReadWorkerState: ProcessFunction {
    static func call(_ input: Int) -> [Int] {
        [PoolWorker.state(as: Int.self) ?? -1, PoolWorker.index ?? -1, Int(getpid())]
    }
}

/// In a spawned (single-threaded) child: a ForkingPool whose closure captures
/// non-Codable state; one input kills its worker. Returns every result, with
/// -1000 for a failed item, and the number of restarts.
struct RunForkingPool: ProcessTask {
    var inputs: [Int]
    func run() async throws -> [Int] {
        let table = NotCodable(value: 100)
        let pool = try ForkingPool(workers: 2, allowingOtherThreads: forksAllowOtherThreads) { (input: Int) -> Int in
            if input == -1 { raise(SIGKILL) }
            return input + table.value
        }
        var results: [Int] = []
        for try await result in pool.map(inputs, chunkSize: 1).results {
            results.append((try? result.get()) ?? -1000)
        }
        let restarts = pool.statistics.map(\.restarts).reduce(0, +)
        await pool.terminate()
        return results + [restarts]
    }
}

nonisolated(unsafe) var hoard: [[UInt8]] = []

/// Keeps 20 MiB more each call (a leaking task); returns the worker's pid.
enum Leak20MiB: ProcessFunction {
    static func call(_ input: Int) -> Int32 {
        hoard.append([UInt8](repeating: UInt8(truncatingIfNeeded: input), count: 20 << 20))
        return getpid()
    }
}

/// Returns `input` bytes, each `input % 251`; kills its own worker on -1.
enum BytesOfLength: ProcessFunction {
    static func call(_ input: Int) -> [UInt8] {
        if input == -1 { raise(SIGKILL) }
        return [UInt8](repeating: UInt8(input % 251), count: input)
    }
}

/// The number of bytes it was given.
enum CountBytes: ProcessFunction {
    static func call(_ input: [UInt8]) -> Int { input.count }
}

/// `count` arrays of `size` bytes, made one at a time as they are read.
struct LargeItems: Sequence, Sendable {
    var count: Int
    var size: Int
    func makeIterator() -> AnyIterator<[UInt8]> {
        var index = 0
        return AnyIterator {
            guard index < count else { return nil }
            index += 1
            return [UInt8](repeating: UInt8(index % 256), count: size)
        }
    }
}

/// Makes a connection and opens a file before a ForkingPool, whose closure
/// writes to both from the workers. Returns what arrived on the connection
/// (sorted), then the file's size.
struct RunForkingPoolWithDescriptors: ProcessTask {
    func run() throws -> [Int] {
        let (reader, writer) = try Connection.pipe()
        var path = Array("/tmp/mp-captured-XXXXXX".utf8CString)
        let file = mkstemp(&path)
        guard file >= 0 else { throw MultiprocessingError(.systemCall, "mkstemp") }
        unlink(path)
        defer { close(file) }
        let pool = try ForkingPool(workers: 2, allowingOtherThreads: forksAllowOtherThreads) { (input: Int) -> Int in
            try writer.send(input * 10)
            let byte: UInt8 = 1
            guard withUnsafeBytes(of: byte, { write(file, $0.baseAddress, 1) }) == 1 else {
                throw MultiprocessingError(.systemCall, "write to the captured file: errno \(errno)")
            }
            return input
        }
        let results = try pool.map(Array(1...6), chunkSize: 1).get(timeout: .seconds(20))
        pool.close()
        pool.join()
        var received: [Int] = []
        for _ in results { received.append(try reader.receive()) }
        var status = stat()
        fstat(file, &status)
        return received.sorted() + [Int(status.st_size)]
    }
}
