/// A task submitted to a pool (Python's `AsyncResult`, a `Future`).
///
/// The pool keeps nothing of it once it has finished: drop the handle and
/// its result is freed.
public final class PoolTask<Output: Sendable>: Sendable {
    let outcome = OneShot<Result<Output, any Error>>()
    private let cancelAction: @Sendable () -> Void
    private weak let backend: (any PoolBackend)?

    @_spi(PoolBackend)
    public init(backend: any PoolBackend, group: PoolGroup) {
        self.backend = backend
        cancelAction = { [weak backend] in backend?.cancel(group, stopRunning: true) }
    }

    /// Before sleeping: lets the backend look for the result on this thread
    /// for a moment, so that a short task's result costs no extra wake-up.
    private func waitBriefly() {
        guard outcome.current == nil, let backend else { return }
        backend.waitBriefly { outcome.current != nil }
    }

    /// The result, once the task has run. Cancelling the awaiting task
    /// cancels this one (its worker is killed and replaced) and throws
    /// `CancellationError`.
    public var value: Output {
        get async throws {
            waitBriefly()
            return try await withTaskCancellationHandler {
                try await outcome.wait().get()
            } onCancel: {
                self.cancel()
            }
        }
    }

    /// Waits for the result, blocking the calling thread (Python's `get(timeout)`).
    ///
    /// - Throws: `.timedOut` when `timeout` passes first (the task goes on);
    ///   the task's own error otherwise.
    @available(*, noasync, message: "Use value in async code")
    public func get(timeout: Duration? = nil) throws -> Output {
        waitBriefly()
        guard let result = outcome.wait(until: timeout.map { .now + $0 }) else {
            throw MultiprocessingError(.timedOut, "the task did not finish within \(timeout!)")
        }
        return try result.get()
    }

    /// The result, or `nil` while the task has not finished.
    public var result: Result<Output, any Error>? { outcome.current }

    /// Whether the task has finished (or failed, or was cancelled).
    public var isDone: Bool { outcome.current != nil }

    /// Cancels the task: dropped if it has not started; if it runs, its worker
    /// is killed and replaced. Its result becomes `CancellationError`.
    public func cancel() {
        cancelAction()
    }
}
