#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import CMultiprocessing

/// A caller about to wait for one result takes it from the workers' rings
/// itself.
///
/// Without this, a short task's result wakes the engine thread (the worker's
/// doorbell), which completes the task and wakes the caller: two wake-ups,
/// each a context switch, on top of the one that wakes the worker. A caller
/// that watches the rings for a moment sees the result land and completes
/// it on its own thread; while anyone watches, workers ring no doorbells, so
/// the engine thread stays asleep. After ``watchLimit`` the caller gives up,
/// arms the doorbells again and waits as before: a long task costs it at
/// most that much CPU.
extension PoolEngine {
    /// How long a caller watches before it sleeps: a few pipe round trips.
    static let watchLimit: UInt64 = 100_000

    /// Watching needs another CPU for the worker; on one it would only delay it.
    private static let watching = availableCPUCount() > 1

    func waitBriefly(until isDone: () -> Bool) {
        guard Self.watching, !isDone() else { return }
        let rings: [ResultRing]? = lock.withLock {
            guard phase != .ended, !slots.isEmpty else { return nil }
            watchers += 1
            for slot in slots { mp_ring_end_wait(slot.ring.pointer) }
            return slots.map(\.ring)
        }
        guard let rings else { return }
        let start = monotonicNanoseconds()
        while !isDone() {
            if rings.contains(where: { mp_ring_has_records($0.pointer) != 0 }) {
                lock.withLock {
                    for slot in slots { takeResults(slot) }
                    dispatch()
                }
                runCompletions()
                continue
            }
            if monotonicNanoseconds() - start > Self.watchLimit { break }
            sched_yield()
        }
        // The last watcher arms the doorbells again; results that came in between are the engine's.
        let missed: Bool = lock.withLock {
            watchers -= 1
            guard watchers == 0 else { return false }
            return slots.contains { mp_ring_prepare_wait($0.ring.pointer) != 0 }
        }
        if missed { notify() }
    }
}
