import Synchronization

/// Wakes the waiting tasks: a notification arrived, a chunk finished, work
/// was queued. A wake-up with nobody waiting is kept for the next wait.
final class Wakeup: Sendable {
    private struct State {
        var pending = false
        var waiters: [CheckedContinuation<Void, Never>] = []
    }

    private let state = Mutex(State())

    func signal() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>] in
            if state.waiters.isEmpty { state.pending = true }
            defer { state.waiters = [] }
            return state.waiters
        }
        for waiter in waiters { waiter.resume() }
    }

    /// Returns after a ``signal()`` or after `timeout`, whichever is first.
    func wait(timeout: Duration) async {
        let timer = Task { [self] in
            if (try? await Task.sleep(for: timeout)) != nil { signal() }
        }
        await withCheckedContinuation { continuation in
            let now = state.withLock { state -> Bool in
                if state.pending {
                    state.pending = false
                    return true
                }
                state.waiters.append(continuation)
                return false
            }
            if now { continuation.resume() }
        }
        timer.cancel()
    }
}
