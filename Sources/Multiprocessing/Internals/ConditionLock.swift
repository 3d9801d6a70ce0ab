#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A pthread mutex with one condition variable, every call checked.
///
/// For the few places that wait for a condition on a thread (a blocking
/// `get()`, a worker thread's queue, an engine that ends); everything else
/// uses `Synchronization.Mutex`. A failing pthread call means memory
/// corruption or a library bug, so it traps with the error's text.
final class ConditionLock: @unchecked Sendable {
    // @unchecked: the mutex and the condition are only used through pthread calls.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    init() {
        Self.check(pthread_mutex_init(mutex, nil), "pthread_mutex_init")
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        #if canImport(Glibc)
            pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        #endif
        Self.check(pthread_cond_init(condition, &attributes), "pthread_cond_init")
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        condition.deallocate()
    }

    /// In a forked child: the lock as new. Another thread of the parent may
    /// have held it at the fork, and that thread did not come along.
    func reinitializeAfterFork() {
        Self.check(pthread_mutex_init(mutex, nil), "pthread_mutex_init")
        Self.check(pthread_cond_init(condition, nil), "pthread_cond_init")
    }

    func lock() { Self.check(pthread_mutex_lock(mutex), "pthread_mutex_lock") }

    func unlock() { Self.check(pthread_mutex_unlock(mutex), "pthread_mutex_unlock") }

    /// Takes the lock if it is free.
    func tryLock() -> Bool {
        let result = pthread_mutex_trylock(mutex)
        if result == EBUSY { return false }
        Self.check(result, "pthread_mutex_trylock")
        return true
    }

    func withLock<R>(_ body: () throws -> R) rethrows -> R {
        lock()
        defer { unlock() }
        return try body()
    }

    /// With the lock held: releases it, waits for a signal, takes it again.
    func wait() { Self.check(pthread_cond_wait(condition, mutex), "pthread_cond_wait") }

    /// With the lock held: like ``wait()``, until `deadline` at the latest.
    /// Returns false once the deadline has passed.
    func wait(until deadline: ContinuousClock.Instant) -> Bool {
        let left = deadline - .now
        if left <= .zero { return false }
        #if canImport(Glibc)
            var wakeAt = Platform.deadline(after: left, on: CLOCK_MONOTONIC)
        #else
            var wakeAt = Platform.deadline(after: left, on: CLOCK_REALTIME)
        #endif
        let result = pthread_cond_timedwait(condition, mutex, &wakeAt)
        if result == ETIMEDOUT { return deadline > .now }
        Self.check(result, "pthread_cond_timedwait")
        return true
    }

    func signal() { Self.check(pthread_cond_signal(condition), "pthread_cond_signal") }

    func broadcast() { Self.check(pthread_cond_broadcast(condition), "pthread_cond_broadcast") }

    private static func check(_ result: Int32, _ call: String) {
        precondition(result == 0, "\(call) failed: \(Platform.errorName(result)): a library bug")
    }
}
