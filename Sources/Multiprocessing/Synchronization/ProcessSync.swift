#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import CMultiprocessing

/// The shared memory behind a semaphore, an event or a barrier.
struct SharedSync: Sendable, Codable {
    let memory: SharedMemory

    init(value: Int64, limit: Int64) throws {
        memory = try SharedMemory(size: MemoryLayout<mp_sync>.stride)
        let result = mp_sync_init(memory.baseAddress.bindMemory(to: mp_sync.self, capacity: 1), value, limit)
        if result != 0 { throw Platform.error("pthread_mutex_init", result) }
    }

    var state: UnsafeMutablePointer<mp_sync> { memory.baseAddress.assumingMemoryBound(to: mp_sync.self) }
}

/// A counting semaphore shared by processes (Python's `Semaphore` and,
/// with `maximum`, `BoundedSemaphore`).
public final class ProcessSemaphore: Sendable, Codable {
    private let sync: SharedSync

    /// Creates a semaphore.
    ///
    /// - Parameters:
    ///   - value: The permits available at first.
    ///   - maximum: For a bounded semaphore, the most permits there may be:
    ///     a ``release()`` beyond it throws.
    public init(value: Int = 1, maximum: Int? = nil) throws {
        guard value >= 0, maximum.map({ $0 >= max(1, value) }) ?? true else {
            throw MultiprocessingError(
                .invalidArgument,
                "a semaphore needs 0 <= value <= maximum (got \(value), \(String(describing: maximum)))")
        }
        sync = try SharedSync(value: Int64(value), limit: Int64(maximum ?? 0))
    }

    /// Takes a permit, waiting at most `timeout` (`nil`: as long as it takes).
    ///
    /// - Returns: `false` when the time ran out.
    @available(*, noasync, message: "Use the async acquire in async code")
    @discardableResult
    public func acquire(timeout: Duration? = nil) throws -> Bool {
        try Self.check(mp_semaphore_acquire(sync.state, Platform.timeoutNanoseconds(timeout)), "acquire")
    }

    /// Takes a permit without blocking a cooperative thread.
    public func acquire() async throws {
        _ = try await BlockingThreads.run { try Self.check(mp_semaphore_acquire(self.sync.state, -1), "acquire") }
    }

    /// Returns a permit.
    ///
    /// - Throws: `.invalidArgument` when a bounded semaphore would exceed its maximum.
    public func release() throws {
        let result = mp_semaphore_release(sync.state)
        if result == EOVERFLOW {
            throw MultiprocessingError(
                .invalidArgument,
                "release() of a bounded semaphore already at its maximum of \(sync.state.pointee.limit)")
        }
        if result != 0 { throw Platform.error("release", result) }
    }

    /// The permits available now.
    public var value: Int { Int(mp_sync_value(sync.state)) }

    private static func check(_ result: Int32, _ call: String) throws -> Bool {
        if result == ETIMEDOUT { return false }
        if result != 0 { throw Platform.error(call, result) }
        return true
    }
}

/// A flag processes can wait for (Python's `Event`).
public final class ProcessEvent: Sendable, Codable {
    private let sync: SharedSync

    /// Creates an event that is not set.
    public init() throws {
        sync = try SharedSync(value: 0, limit: 0)
    }

    /// Whether the flag is set.
    public var isSet: Bool { mp_sync_value(sync.state) != 0 }

    /// Sets the flag and wakes every waiter, in every process.
    public func set() { mp_event_set(sync.state, 1) }

    /// Clears the flag.
    public func clear() { mp_event_set(sync.state, 0) }

    /// Waits until the flag is set, at most `timeout` (`nil`: as long as it takes).
    ///
    /// - Returns: Whether the flag is set.
    @available(*, noasync, message: "Use the async wait in async code")
    @discardableResult
    public func wait(timeout: Duration? = nil) throws -> Bool {
        let result = mp_event_wait(sync.state, Platform.timeoutNanoseconds(timeout))
        if result == ETIMEDOUT { return false }
        if result != 0 { throw Platform.error("event wait", result) }
        return true
    }

    /// Waits until the flag is set, without blocking a cooperative thread.
    public func wait() async throws {
        _ = try await BlockingThreads.run {
            let result = mp_event_wait(self.sync.state, -1)
            if result != 0 { throw Platform.error("event wait", result) }
        }
    }
}

/// A point that a fixed number of processes wait at until all have arrived
/// (Python's `Barrier`).
///
/// A party that times out breaks the barrier: it and every other waiter,
/// present and future, get `.closed` (Python's `BrokenBarrierError`) until
/// ``reset()``.
public final class ProcessBarrier: Sendable, Codable {
    private let sync: SharedSync
    /// How many parties must arrive.
    public let parties: Int

    /// Creates a barrier for `parties` processes (or threads).
    public init(parties: Int) throws {
        guard parties >= 1 else {
            throw MultiprocessingError(.invalidArgument, "a barrier needs at least 1 party, not \(parties)")
        }
        self.parties = parties
        sync = try SharedSync(value: 0, limit: Int64(parties))
    }

    /// Waits until every party has arrived.
    ///
    /// - Parameter timeout: How long to wait; `nil` waits as long as it takes.
    /// - Returns: This party's arrival index, from `parties - 1` (first) to 0 (last).
    /// - Throws: `.timedOut` when the time ran out (the barrier is then
    ///   broken); `.closed` when the barrier is broken.
    @available(*, noasync, message: "Use the async wait in async code")
    @discardableResult
    public func wait(timeout: Duration? = nil) throws -> Int {
        var index: Int64 = 0
        let result = mp_barrier_wait(sync.state, Platform.timeoutNanoseconds(timeout), &index)
        switch result {
        case 0: return Int(index)
        case ETIMEDOUT:
            throw MultiprocessingError(.timedOut, "the barrier timed out after \(timeout ?? .zero) and is now broken")
        case EPIPE: throw MultiprocessingError(.closed, "the barrier is broken")
        default: throw Platform.error("barrier wait", result)
        }
    }

    /// Waits until every party has arrived, without blocking a cooperative thread.
    @discardableResult
    public func wait() async throws -> Int {
        try await BlockingThreads.run { try self.wait(timeout: nil) }
    }

    /// Whether a timeout or ``abort()`` broke the barrier.
    public var isBroken: Bool { sync.state.pointee.broken != 0 }

    /// Breaks the barrier: every waiter gets `.closed`.
    public func abort() { mp_barrier_set_broken(sync.state, 1) }

    /// Repairs a broken barrier for a new round.
    public func reset() { mp_barrier_set_broken(sync.state, 0) }
}
