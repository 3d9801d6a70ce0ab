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
