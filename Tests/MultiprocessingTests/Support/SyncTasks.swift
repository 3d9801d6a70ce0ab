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
