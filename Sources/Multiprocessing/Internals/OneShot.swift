#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A value that arrives once, awaited by async code or waited for by a thread.
final class OneShot<Value: Sendable>: @unchecked Sendable {
    // @unchecked: every stored property is touched only with `mutex` held.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let arrived = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var value: Value?
    private var waiters: [CheckedContinuation<Value, Never>] = []

    init() {
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(arrived, nil)
    }

    deinit {
        pthread_cond_destroy(arrived)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        arrived.deallocate()
    }

    /// Sets the value (the first call wins) and wakes every waiter.
    func fulfill(_ newValue: Value) {
        pthread_mutex_lock(mutex)
        guard value == nil else {
            pthread_mutex_unlock(mutex)
            return
        }
        value = newValue
        let resumed = waiters
        waiters = []
        pthread_cond_broadcast(arrived)
        pthread_mutex_unlock(mutex)
        for waiter in resumed { waiter.resume(returning: newValue) }
    }

    var current: Value? {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return value
    }

    func wait() async -> Value {
        await withCheckedContinuation { continuation in
            pthread_mutex_lock(mutex)
            if let value {
                pthread_mutex_unlock(mutex)
                continuation.resume(returning: value)
            } else {
                waiters.append(continuation)
                pthread_mutex_unlock(mutex)
            }
        }
    }

    /// Blocks the calling thread until the value arrives or `deadline` passes.
    func wait(until deadline: ContinuousClock.Instant?) -> Value? {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        while value == nil {
            guard let deadline else {
                pthread_cond_wait(arrived, mutex)
                continue
            }
            let left = deadline - .now
            if left <= .zero { return nil }
            var wakeAt = Platform.deadline(after: left, on: CLOCK_REALTIME)
            pthread_cond_timedwait(arrived, mutex, &wakeAt)
        }
        return value
    }
}
