#if canImport(Glibc)
    import Glibc
#endif
import Multiprocessing

/// Waits at the barrier and returns its arrival index.
struct WaitAtBarrier: ProcessTask {
    var barrier: ProcessBarrier
    func run() throws -> Int { try barrier.wait(timeout: .seconds(20)) }
}

/// Waits for the event, then reports how long it waited.
struct WaitForEvent: ProcessTask {
    var event: ProcessEvent
    var ready: ProcessSemaphore
    func run() throws -> Bool {
        try ready.release()
        return try event.wait(timeout: .seconds(20))
    }
}

/// Waits on the condition until the flag is set; returns the flag.
struct WaitOnCondition: ProcessTask {
    var condition: ProcessCondition
    var flag: SharedValue<Int>
    var started: ProcessSemaphore
    func run() throws -> Int {
        try condition.withLock { _ in
            try started.release()
            while flag.value == 0 {
                guard try condition.wait(timeout: .seconds(20)) else { return -1 }
            }
            return flag.value
        }
    }
}

struct PutIntoSimpleQueue: ProcessTask {
    var queue: SimpleProcessQueue<String>
    var text: String
    func run() throws { try queue.put(text) }
}

/// In a spawned (single-threaded) child: forked children use a queue, a
/// shared counter and a lock they inherited, not received in a task value.
struct UseInheritedPrimitives: ProcessTask {
    func run() throws -> [Int] {
        let queue = try ProcessQueue<Int>()
        let counter = try SharedValue(0)
        let children = try (0..<3).map { index in
            try ChildProcess(allowingOtherThreads: forksAllowOtherThreads) { try countAndPut(counter, queue, index) }
        }
        for child in children { try child.start() }
        var got: [Int] = []
        for _ in 0..<3 { got.append(try queue.get(timeout: .seconds(20))) }
        for child in children { try child.join() }
        return got.sorted() + [counter.value]
    }
}

/// What each forked child of ``UseInheritedPrimitives`` does (blocking calls, outside async code).
func countAndPut(_ counter: SharedValue<Int>, _ queue: ProcessQueue<Int>, _ index: Int) throws {
    try counter.withLock { $0 += 1 }
    try queue.put(index)
}
