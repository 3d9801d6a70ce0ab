/// A value that arrives once, awaited by async code or waited for by a thread.
final class OneShot<Value: Sendable>: @unchecked Sendable {
    // @unchecked: every stored property is touched only with `lock` held.
    private let lock = ConditionLock()
    private var value: Value?
    private var waiters: [UnsafeContinuation<Value, Never>] = []

    init() {}

    /// Sets the value (the first call wins) and wakes every waiter. Returns
    /// whether this call set it.
    @discardableResult
    func fulfill(_ newValue: Value) -> Bool {
        lock.lock()
        guard value == nil else {
            lock.unlock()
            return false
        }
        value = newValue
        let resumed = waiters
        waiters = []
        lock.broadcast()
        lock.unlock()
        for waiter in resumed { waiter.resume(returning: newValue) }
        return true
    }

    var current: Value? {
        lock.withLock { value }
    }

    func wait() async -> Value {
        if let value = current { return value }
        return await withUnsafeContinuation { continuation in
            lock.lock()
            if let value {
                lock.unlock()
                continuation.resume(returning: value)
            } else {
                waiters.append(continuation)
                lock.unlock()
            }
        }
    }

    /// Blocks the calling thread until the value arrives or `deadline` passes.
    func wait(until deadline: ContinuousClock.Instant?) -> Value? {
        lock.lock()
        defer { lock.unlock() }
        while value == nil {
            guard let deadline else {
                lock.wait()
                continue
            }
            if !lock.wait(until: deadline) { return value }
        }
        return value
    }
}
