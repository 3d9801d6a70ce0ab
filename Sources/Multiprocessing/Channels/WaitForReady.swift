/// What `waitForReady(connections:children:timeout:)` found ready.
public struct ReadyObjects: Sendable {
    /// The connections that can receive without blocking: a message (or part
    /// of one) has arrived, the other end was closed, or a refused message
    /// left the end ``Connection/State/unreadable`` (its receive throws at once).
    public var connections: [Connection]
    /// The children that have exited; each was reaped on the way, so its
    /// ``AnyChildProcess/exitCode`` is known (unless another thread is joining it).
    public var children: [AnyChildProcess]

    /// Whether nothing was ready: the timeout passed first.
    public var isEmpty: Bool { connections.isEmpty && children.isEmpty }
}

/// Waits until any of several connections can receive or any of several
/// children has exited (Python's `multiprocessing.connection.wait`).
///
/// Each child's exit is a descriptor event (its pidfd, or the fork server's
/// report of it), so connections and children wake the same `poll` and none
/// of them is looked at in a loop. The same object listed twice counts once.
///
/// ```swift
/// var open = connections
/// while !open.isEmpty {
///     for connection in try waitForReady(connections: open).connections {
///         do { handle(try connection.receive(Message.self)) } catch { open.removeAll { $0 === connection } }
///     }
/// }
/// ```
///
/// - Parameters:
///   - connections: Ends that receive (duplex ends, or the receiving end of a one-way pair).
///   - children: Started children.
///   - timeout: The longest to wait; `nil` waits until something is ready,
///     `.zero` only looks.
/// - Returns: What is ready, each list in the order given; empty when the
///   timeout passed first.
/// - Throws: `.invalidArgument` for an end that only sends, `.closed` for a
///   closed connection, `.notStarted` for a child not yet started.
public func waitForReady(
    connections: [Connection], children: [AnyChildProcess] = [], timeout: Duration? = nil
) throws -> ReadyObjects {
    let connections = uniqueObjects(connections)
    let children = uniqueObjects(children)
    return try readiness(connections, children, deadline: timeout.map { .now + $0 })
}

/// Waits until any of several connections can receive or any of several
/// children has exited, without blocking a thread of the cooperative pool
/// (Python's `multiprocessing.connection.wait`).
///
/// See `waitForReady(connections:children:timeout:)` for what counts as ready.
/// Cancelling the calling task ends the wait with `CancellationError`.
///
/// - Parameters:
///   - connections: Ends that receive.
///   - children: Started children.
///   - timeout: The longest to wait; `nil` waits until something is ready.
/// - Returns: What is ready; empty when the timeout passed first.
/// - Throws: `.invalidArgument`, `.closed`, `.notStarted` as the blocking
///   form does; `CancellationError`.
public func waitForReady(
    connections: [Connection], children: [AnyChildProcess] = [], timeout: Duration? = nil
) async throws -> ReadyObjects {
    let connections = uniqueObjects(connections)
    let children = uniqueObjects(children)
    let deadline = timeout.map { ContinuousClock.now + $0 }
    let immediate = try readiness(connections, children, deadline: .now)
    if !immediate.isEmpty || (deadline.map { $0 <= .now } ?? false) { return immediate }
    while true {
        try Task.checkCancellation()
        // Short slices keep cancellation prompt; a ready descriptor ends a slice at once.
        var slice = ContinuousClock.now + .milliseconds(100)
        if let deadline, deadline < slice { slice = deadline }
        let sliceEnd = slice
        let ready = try await BlockingThreads.run { try readiness(connections, children, deadline: sliceEnd) }
        if !ready.isEmpty { return ready }
        if let deadline, deadline <= .now { return ready }
    }
}

/// One wait until `deadline`: what is ready then.
private func readiness(
    _ connections: [Connection], _ children: [AnyChildProcess], deadline: ContinuousClock.Instant?
) throws -> ReadyObjects {
    for connection in connections { try connection.checkWaitable() }
    for child in children where child.pid == nil {
        throw MultiprocessingError(.notStarted, "process '\(child.name)' has not been started, so it cannot end")
    }
    while true {
        var ready = ReadyObjects(
            connections: connections.filter { $0.hasBufferedMessage || $0.state == .unreadable },
            children: children.filter { $0.exitDescriptor == nil })
        // A child without a pidfd (kernels before 5.3) is looked at every 10 ms.
        let exitFDs = children.map { $0.exitDescriptor ?? -1 }
        let unwatchable = children.indices.filter { exitFDs[$0] < 0 && children[$0].exitDescriptor != nil }
        for index in unwatchable where children[index].reapIfExited() != nil { ready.children.append(children[index]) }
        if !ready.isEmpty { return ready }
        var sliceEnd = deadline
        if !unwatchable.isEmpty {
            let step = ContinuousClock.now + .milliseconds(10)
            if sliceEnd.map({ step < $0 }) ?? true { sliceEnd = step }
        }
        let watched = children.indices.filter { exitFDs[$0] >= 0 }
        let fds = connections.map(\.readFD) + watched.map { exitFDs[$0] }
        let readable = try Platform.waitReadable(fds, deadline: sliceEnd)
        ready.connections = connections.indices.filter { readable[$0] }.map { connections[$0] }
        for (position, index) in watched.enumerated() where readable[connections.count + position] {
            _ = children[index].reapIfExited()
            ready.children.append(children[index])
        }
        ready.children = children.filter { child in ready.children.contains { $0 === child } }
        if !ready.isEmpty { return ready }
        if let deadline, deadline <= .now { return ready }
    }
}

/// `items` without repeats of the same object, in order.
private func uniqueObjects<T: AnyObject>(_ items: [T]) -> [T] {
    var seen = Set<ObjectIdentifier>()
    return items.filter { seen.insert(ObjectIdentifier($0)).inserted }
}

extension Connection {
    /// Throws unless this end can be waited on for a message.
    func checkWaitable() throws {
        guard readFD >= 0 else {
            throw MultiprocessingError(
                .invalidArgument, "this end of a one-way connection only sends; wait on the receiving end")
        }
        guard !isClosed else { throw MultiprocessingError(.closed, "a closed connection cannot be waited on") }
    }
}
