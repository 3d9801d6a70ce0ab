import Synchronization

/// Values handed from threads to one waiting task, taken in batches.
///
/// `put` appends under a lock and resumes the task if it waits; the task
/// takes everything that arrived in one call, so a burst of small results
/// costs one wake-up instead of one each.
final class Inbox<Element: Sendable>: Sendable {
    private struct State {
        var items: [Element] = []
        var waiter: UnsafeContinuation<Void, Never>?
        var woken = false
    }

    private let state = Mutex(State())

    init() {}

    /// Adds a value; wakes the waiting task.
    func put(_ element: sending Element) {
        let waiter: UnsafeContinuation<Void, Never>? = state.withLock { state in
            state.items.append(element)
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    /// Wakes the waiting task (or the next call to ``takeAll()``) without a
    /// value, as for cancellation.
    func wake() {
        let waiter: UnsafeContinuation<Void, Never>? = state.withLock { state in
            state.woken = true
            defer { state.waiter = nil }
            return state.waiter
        }
        waiter?.resume()
    }

    /// Everything that arrived, waiting first if nothing has. Empty only
    /// after ``wake()``. One task at a time may call it.
    func takeAll() async -> [Element] {
        if let ready = take() { return ready }
        await withUnsafeContinuation { (continuation: UnsafeContinuation<Void, Never>) in
            let waits = state.withLock { state in
                guard state.items.isEmpty && !state.woken else { return false }
                state.waiter = continuation
                return true
            }
            if !waits { continuation.resume() }
        }
        return take() ?? []
    }

    private func take() -> [Element]? {
        state.withLock { state in
            if state.woken {
                state.woken = false
                return state.items.isEmpty ? [] : swap(&state.items)
            }
            return state.items.isEmpty ? nil : swap(&state.items)
        }
    }

    private func swap(_ items: inout [Element]) -> [Element] {
        var taken: [Element] = []
        taken.reserveCapacity(items.count)
        Swift.swap(&taken, &items)
        return taken
    }
}
