/// Values handed from threads to one waiting consumer, taken in batches.
///
/// `put` appends under a lock and wakes the consumer if it waits; the
/// consumer takes everything that arrived in one call, so a burst of small
/// results costs one wake-up instead of one each. The consumer is a task
/// (``takeAll()``) or a blocked thread (``takeAll(until:)``).
final class Inbox<Element: Sendable>: @unchecked Sendable {
    // @unchecked: every stored property is touched only with `lock` held.
    private let lock = ConditionLock()
    private var items: [Element] = []
    private var waiter: UnsafeContinuation<Void, Never>?
    private var woken = false

    init() {}

    /// Adds a value; wakes the consumer.
    func put(_ element: sending Element) {
        lock.lock()
        items.append(element)
        let resumed = waiter
        waiter = nil
        lock.unlock()
        lock.signal()  // after the unlock, so the woken consumer does not block on the lock
        resumed?.resume()
    }

    /// Wakes the consumer (or its next call) without a value, as for
    /// cancellation or a progress tick.
    func wake() {
        lock.lock()
        woken = true
        let resumed = waiter
        waiter = nil
        lock.unlock()
        lock.signal()  // after the unlock, so the woken consumer does not block on the lock
        resumed?.resume()
    }

    /// Everything that arrived, waiting first if nothing has. Empty only
    /// after ``wake()``. One task at a time may call it.
    func takeAll() async -> [Element] {
        if let ready = lock.withLock({ take() }) { return ready }
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            lock.lock()
            if items.isEmpty && !woken {
                waiter = continuation
                lock.unlock()
            } else {
                lock.unlock()
                continuation.resume()
            }
        }
        return lock.withLock { take() } ?? []
    }

    /// Everything that arrived, blocking the calling thread until something
    /// does, ``wake()`` is called or `deadline` passes (then it is empty).
    func takeAll(until deadline: ContinuousClock.Instant?) -> [Element] {
        lock.withLock {
            while true {
                if let ready = take() { return ready }
                if let deadline {
                    if !lock.wait(until: deadline) { return [] }
                } else {
                    lock.wait()
                }
            }
        }
    }

    /// With the lock held: what arrived, `[]` once after a wake, `nil` when nothing did.
    private func take() -> [Element]? {
        if woken {
            woken = false
            return swapItems()
        }
        return items.isEmpty ? nil : swapItems()
    }

    private func swapItems() -> [Element] {
        var taken: [Element] = []
        taken.reserveCapacity(items.count)
        swap(&taken, &items)
        return taken
    }
}
