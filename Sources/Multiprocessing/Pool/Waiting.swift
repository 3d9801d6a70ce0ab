/// Something that runs and ends: a ``PoolTask`` or a child process. Python's
/// `concurrent.futures` functions `wait` and `as_completed` take any of
/// them: see ``waitForCompletion(of:until:timeout:)`` and ``completions(of:timeout:)``.
public protocol Waitable: AnyObject, Sendable {
    /// Whether it has ended (for a child process: exited and been reaped).
    var isDone: Bool { get }
    /// Whether it ended in failure: a task that threw or was cancelled, a
    /// child that did not exit with code 0.
    var didFail: Bool { get }
    /// Waits until it has ended, or the calling task is cancelled. Waiting
    /// does not cancel the work.
    func waitUntilDone() async
}

extension PoolTask: Waitable {
    /// Whether the task threw, or was cancelled (`false` while it runs).
    public var didFail: Bool {
        if case .failure = outcome.current { return true }
        return false
    }

    /// Waits until the task has finished, or the calling task is cancelled;
    /// cancelling the waiting task does not cancel this one.
    public func waitUntilDone() async {
        _ = await outcome.waitUnlessCancelled()
    }
}

extension AnyChildProcess: Waitable {
    /// Whether the child has exited (it is reaped on the way).
    public var isDone: Bool { pid != nil && !isAlive }

    /// Whether the child exited with a code other than 0 or was killed.
    public var didFail: Bool { isDone && exitCode != 0 }

    /// Waits until the child has exited, or the calling task is cancelled.
    /// A child that was never started never ends.
    public func waitUntilDone() async {
        while !Task.isCancelled {
            if (try? await join(timeout: .seconds(3600))) == true { return }
            if pid == nil { try? await Task.sleep(for: .milliseconds(100)) }
        }
    }
}

/// When ``waitForCompletion(of:until:timeout:)`` returns (Python's `return_when`).
public enum CompletionCondition: Sendable, Hashable {
    /// As soon as any one has ended (`FIRST_COMPLETED`).
    case firstCompleted
    /// As soon as any one has failed, or all have ended (`FIRST_EXCEPTION`).
    case firstFailure
    /// When all have ended (`ALL_COMPLETED`).
    case allCompleted
}

/// Waits for tasks or child processes (Python's `concurrent.futures.wait`).
///
/// ```swift
/// let handles = try inputs.map { try pool.submit(Work(number: $0)) }
/// let (done, pending) = await waitForCompletion(of: handles, until: .firstFailure, timeout: .seconds(10))
/// ```
///
/// The same object listed twice counts once.
///
/// - Parameters:
///   - items: What to wait for.
///   - condition: When to return; by default when all have ended.
///   - timeout: The longest to wait; `nil` waits as long as the condition takes.
/// - Returns: The items that have ended and those that have not, each in
///   the order they were given. Nothing is cancelled.
public func waitForCompletion<W: Waitable>(
    of items: [W], until condition: CompletionCondition = .allCompleted, timeout: Duration? = nil
) async -> (done: [W], pending: [W]) {
    let unique = uniqueItems(items)
    var ended = Set<Int>()
    func satisfied() -> Bool {
        switch condition {
        case .allCompleted: return ended.count == unique.count
        case .firstCompleted: return !ended.isEmpty || unique.isEmpty
        case .firstFailure: return ended.count == unique.count || ended.contains { unique[$0].didFail }
        }
    }
    for (index, item) in unique.enumerated() where item.isDone { ended.insert(index) }
    if !satisfied() {
        await withTaskGroup(of: Int?.self) { group in
            for (index, item) in unique.enumerated() where !ended.contains(index) {
                group.addTask {
                    await item.waitUntilDone()
                    return index
                }
            }
            if let timeout {
                group.addTask {
                    try? await Task.sleep(for: timeout)
                    return nil
                }
            }
            for await index in group {
                guard let index else { break }  // the timeout
                ended.insert(index)
                if satisfied() { break }
            }
            group.cancelAll()
        }
    }
    for (index, item) in unique.enumerated() where !ended.contains(index) && item.isDone { ended.insert(index) }
    let done = unique.indices.filter { ended.contains($0) }.map { unique[$0] }
    let pending = unique.indices.filter { !ended.contains($0) }.map { unique[$0] }
    return (done, pending)
}

/// The tasks or child processes as they end (Python's `concurrent.futures.as_completed`).
///
/// ```swift
/// for try await handle in completions(of: handles, timeout: .seconds(30)) {
///     print(try await handle.value)
/// }
/// ```
///
/// The same object listed twice is yielded once. Stopping the iteration
/// stops the waiting, not the work.
///
/// - Parameters:
///   - items: What to wait for.
///   - timeout: The longest to wait for all of them.
/// - Returns: A sequence of the items, each when it has ended; it throws
///   `.timedOut`, saying how many have not ended, when `timeout` passes first.
public func completions<W: Waitable>(of items: [W], timeout: Duration? = nil) -> AsyncThrowingStream<W, any Error> {
    let unique = uniqueItems(items)
    return AsyncThrowingStream { continuation in
        let waiting = Task {
            await withTaskGroup(of: Int?.self) { group in
                for (index, item) in unique.enumerated() {
                    group.addTask {
                        await item.waitUntilDone()
                        return Task.isCancelled ? nil : index
                    }
                }
                if let timeout {
                    group.addTask {
                        try? await Task.sleep(for: timeout)
                        return nil
                    }
                }
                var yielded = 0
                for await index in group {
                    guard let index else {
                        if Task.isCancelled { break }
                        continuation.finish(
                            throwing: MultiprocessingError(
                                .timedOut,
                                "\(unique.count - yielded) (of \(unique.count)) did not end within \(timeout!)"))
                        group.cancelAll()
                        return
                    }
                    continuation.yield(unique[index])
                    yielded += 1
                    if yielded == unique.count { break }
                }
                group.cancelAll()
                continuation.finish()
            }
        }
        continuation.onTermination = { _ in waiting.cancel() }
    }
}

/// `items` without repeats of the same object, in order.
private func uniqueItems<W: Waitable>(_ items: [W]) -> [W] {
    var seen = Set<ObjectIdentifier>()
    return items.filter { seen.insert(ObjectIdentifier($0)).inserted }
}
