/// A value that arrives once, awaited by async code or waited for by a thread.
final class OneShot<Value: Sendable>: @unchecked Sendable {
    // @unchecked: every stored property is touched only with `lock` held.
    private let lock = ConditionLock()
    private var value: Value?
    private var waiters: [UnsafeContinuation<Value, Never>] = []
    /// Waiters that give up when their task is cancelled, by number.
    private var cancellableWaiters: [Int: UnsafeContinuation<Value?, Never>] = [:]
    private var nextWaiter = 0

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
        let cancellable = cancellableWaiters.values
        waiters = []
        cancellableWaiters = [:]
        lock.unlock()
        // After the unlock: a woken thread finds the lock free instead of blocking on it again.
        lock.broadcast()
        for waiter in resumed { waiter.resume(returning: newValue) }
        for waiter in cancellable { waiter.resume(returning: newValue) }
        return true
    }

    /// Waits for the value; `nil` if the waiting task is cancelled first.
    func waitUnlessCancelled() async -> Value? {
        if let value = current { return value }
        let number = lock.withLock {
            nextWaiter += 1
            return nextWaiter
        }
        return await withTaskCancellationHandler {
            await withUnsafeContinuation { (continuation: UnsafeContinuation<Value?, Never>) in
                lock.lock()
                if let value {
                    lock.unlock()
                    continuation.resume(returning: value)
                } else if Task.isCancelled {
                    lock.unlock()
                    continuation.resume(returning: nil)
                } else {
                    cancellableWaiters[number] = continuation
                    lock.unlock()
                }
            }
        } onCancel: {
            let waiter = lock.withLock { cancellableWaiters.removeValue(forKey: number) }
            waiter?.resume(returning: nil)
        }
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
