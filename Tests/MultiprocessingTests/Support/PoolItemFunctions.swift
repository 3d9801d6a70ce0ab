#if canImport(Glibc)
    import Glibc
#endif
import Multiprocessing
import Synchronization

/// Returns its input, except: -1 kills its worker with SIGKILL, -2 aborts,
/// -3 hangs (ignoring SIGTERM), -4 exits with code 3; and inputs of 1000 and
/// more sleep `input - 1000` milliseconds first.
enum Troublesome: ProcessFunction {
    static func call(_ input: Int) -> Int {
        switch input {
        case -1: raise(SIGKILL)
        case -2: abort()
        case -3:
            signal(SIGTERM, SIG_IGN)
            while true { usleep(10_000) }
        case -4: exit(3)
        case 1000...: usleep(useconds_t((input - 1000) * 1000))
        default: break
        }
        return input
    }
}

/// Sleeps forever.
struct SleepForever: ProcessTask {
    func run() {
        while true { sleep(1) }
    }
}

/// Sleeps the given milliseconds, then returns them.
struct SleepFor: ProcessTask {
    var milliseconds: Int
    func run() -> Int {
        usleep(useconds_t(milliseconds * 1000))
        return milliseconds
    }
}

/// Throws when its number is odd.
struct FailIfOdd: ProcessTask {
    var number: Int
    func run() throws -> Int {
        if number % 2 == 1 { throw OddInput(value: number) }
        return number
    }
}

/// How many `Tracked` values are alive in this process.
let trackedAlive = Atomic(0)

/// A value whose instances are counted.
final class Tracked: Codable, Sendable {
    let value: Int
    init(value: Int) {
        self.value = value
        trackedAlive.add(1, ordering: .relaxed)
    }
    init(from decoder: any Decoder) throws {
        value = try decoder.singleValueContainer().decode(Int.self)
        trackedAlive.add(1, ordering: .relaxed)
    }
    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(value)
    }
    deinit { trackedAlive.subtract(1, ordering: .relaxed) }
}

enum MakeTracked: ProcessFunction {
    static func call(_ input: Int) -> Tracked { Tracked(value: input) }
}

/// Adds its number to a shared counter it carries.
struct AddToShared: ProcessTask {
    var counter: SharedValue<Int>
    var number: Int
    func run() throws -> Int {
        try counter.withLock { $0 += number }
        return number
    }
}

/// A function whose input carries a queue: puts the number into it.
struct QueuedNumber: Codable, Sendable {
    var queue: ProcessQueue<Int>
    var number: Int
}

enum PutInQueue: ProcessFunction {
    static func call(_ input: QueuedNumber) throws -> Int {
        try input.queue.put(input.number)
        return input.number
    }
}

/// Gives each worker the shared counter it carries.
struct ShareCounter: WorkerInitializer {
    var counter: SharedValue<Int>
    func makeState() throws -> SharedValue<Int> {
        try counter.withLock { $0 += 1000 }
        return counter
    }
}

/// Adds its input to the counter its worker's initializer gave it.
enum AddToWorkerCounter: ProcessFunction {
    static func call(_ input: Int) throws -> Int {
        guard let counter = PoolWorker.state(as: SharedValue<Int>.self) else { return -1 }
        try counter.withLock { $0 += input }
        return input
    }
}

/// In a spawned (single-threaded) child: a ForkingPool used from
/// synchronous code, shared objects in its inputs, and a second ForkingPool.
struct RunForkingPoolSynchronously: ProcessTask {
    var counter: SharedValue<Int>
    func run() throws -> [Int] {
        let offset = 7  // not Codable would do too: the closure is forked, never encoded
        let pool = try ForkingPool(workers: 2, allowingOtherThreads: forksAllowOtherThreads) { (input: AddToShared) -> Int in
            try input.run() + offset
        }
        let results = try pool.map((1...10).map { AddToShared(counter: counter, number: $0) }).get()
        pool.close()
        pool.join()
        return results
    }
}
