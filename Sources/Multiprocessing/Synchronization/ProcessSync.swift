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
///
/// Made with `value: 1, maximum: 1` it is a lock that any process or thread
/// may release, not only the one that acquired it: what Python's `Lock`
/// allows and a ``ProcessLock`` refuses.
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

/// What a ``ProcessBarrier`` does once per pass, before any party goes on
/// (Python's `Barrier(action=)`).
///
/// The action runs in whichever process arrives last, so every process must
/// have it. A closure cannot travel to a spawned child, so the action is a
/// value named by its type, as a ``ProcessTask`` is: the barrier carries it
/// into every child it is handed to, with its stored properties, and the
/// child finds the type by name. Its properties may be shared objects
/// (a ``SharedValue``, a ``ProcessQueue``) for the action to update.
///
/// ```swift
/// struct CountRound: BarrierAction {
///     var rounds: SharedValue<Int>
///     func run() throws { rounds.value += 1 }
/// }
/// let barrier = try ProcessBarrier(parties: 4, action: CountRound(rounds: rounds))
/// ```
///
/// - Important: Declare the type `internal` or `public`, at file scope or
///   nested in such a type, so that a child can find it by name; the barrier
///   refuses other types when it is made, with `.unresolvableTask`.
public protocol BarrierAction: Codable, Sendable {
    /// Runs once per pass, in the process (and thread) of the party that
    /// arrived last, while the other parties still wait. If it throws, the
    /// barrier breaks: that party gets the error, and the others `.brokenBarrier`.
    func run() throws
}

/// A point that a fixed number of processes wait at until all have arrived
/// (Python's `Barrier`).
///
/// Once every party has arrived, the barrier's ``BarrierAction`` (if it has
/// one) runs in the process that arrived last, then every party goes on, and
/// the barrier is ready for the next round.
///
/// A party that times out breaks the barrier, and so do ``abort()`` and an
/// action that throws: every party waiting, and every later wait, gets
/// `.brokenBarrier` until ``reset()``. A reset also breaks the round in
/// progress: the parties waiting in it get `.brokenBarrier` at once, and the
/// barrier starts a new round.
///
/// ```swift
/// let barrier = try ProcessBarrier(parties: 3, timeout: .seconds(30))
/// // in each of 3 processes:
/// try barrier.wait()
/// ```
///
/// The action runs outside the barrier's lock while the others wait, so a
/// party's timeout counts the action's time too: a timeout that runs out
/// during the action breaks the round, and the party that ran it gets
/// `.brokenBarrier` as well.
///
/// - Important: A party that dies while it waits still counts as arrived,
///   and one that dies while it runs the action leaves the round unfinished:
///   give the barrier a timeout if parties may die.
///
/// The corresponding C function is `pthread_cond_timedwait`, on a robust,
/// process-shared mutex.
public final class ProcessBarrier: Sendable, Codable {
    private let sync: SharedSync
    /// How many parties must arrive.
    public let parties: Int
    /// How long ``wait(timeout:)`` waits when it is given no timeout (Python's
    /// `timeout`); `nil`: as long as it takes.
    public let timeout: Duration?
    private let action: (any BarrierAction)?

    /// Creates a barrier for `parties` processes (or threads).
    ///
    /// - Parameters:
    ///   - parties: How many parties must arrive before any goes on.
    ///   - action: What to run once per pass, in the process of the party
    ///     that arrives last, before the others go on.
    ///   - timeout: The timeout of a ``wait(timeout:)`` given none; `nil`:
    ///     as long as it takes.
    /// - Throws: `.invalidArgument` for fewer than 1 party;
    ///   `.unresolvableTask` when a child could not find the action's type by
    ///   name; `.systemCall` when the shared memory cannot be set up.
    public init(parties: Int, action: (any BarrierAction)? = nil, timeout: Duration? = nil) throws {
        guard parties >= 1 else {
            throw MultiprocessingError(.invalidArgument, "a barrier needs at least 1 party, not \(parties)")
        }
        if let action { _ = try Self.typeName(of: action) }
        self.parties = parties
        self.action = action
        self.timeout = timeout
        sync = try SharedSync(value: 0, limit: Int64(parties))
    }

    private static func typeName<A: BarrierAction>(of action: A) throws -> String {
        try TaskName.resolvable(A.self)
    }

    private enum CodingKeys: String, CodingKey {
        case sync, parties, timeout, actionType, action
    }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        sync = try container.decode(SharedSync.self, forKey: .sync)
        parties = try container.decode(Int.self, forKey: .parties)
        timeout = try container.decodeIfPresent(Duration.self, forKey: .timeout)
        if let name = try container.decodeIfPresent(String.self, forKey: .actionType) {
            guard let type = _typeByName(name) as? any BarrierAction.Type else {
                throw MultiprocessingError(
                    .unresolvableTask, "the barrier's action type '\(name)' cannot be found in this process")
            }
            action = try type.init(from: container.superDecoder(forKey: .action))
        } else {
            action = nil
        }
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(sync, forKey: .sync)
        try container.encode(parties, forKey: .parties)
        try container.encodeIfPresent(timeout, forKey: .timeout)
        if let action {
            try container.encode(Self.typeName(of: action), forKey: .actionType)
            try action.encode(to: container.superEncoder(forKey: .action))
        }
    }

    /// Waits until every party has arrived (and the action, if any, has run).
    ///
    /// - Parameter timeout: How long to wait; `nil` waits for the barrier's
    ///   ``timeout``, or as long as it takes when it has none.
    /// - Returns: This party's arrival index, from `parties - 1` (first) to 0
    ///   (last; the party that runs the action).
    /// - Throws: `.timedOut` when the time ran out (the barrier is then
    ///   broken); `.brokenBarrier` when the barrier is broken or was reset
    ///   before the round was complete; what the action throws, in the party
    ///   that ran it (the barrier is then broken).
    @discardableResult
    public func wait(timeout: Duration? = nil) throws -> Int {
        let timeout = timeout ?? self.timeout
        var index: Int64 = 0
        var round: UInt64 = 0
        var result = mp_barrier_wait(
            sync.state, Platform.timeoutNanoseconds(timeout), action == nil ? 0 : 1, &index, &round)
        if result == EINPROGRESS, let action {
            do {
                try action.run()
            } catch {
                _ = mp_barrier_finish(sync.state, round, 0)
                throw error
            }
            result = mp_barrier_finish(sync.state, round, 1)
        }
        switch result {
        case 0: return Int(index)
        case ETIMEDOUT:
            throw MultiprocessingError(.timedOut, "the barrier timed out after \(timeout ?? .zero) and is now broken")
        case EPIPE:
            throw MultiprocessingError(
                .brokenBarrier, "the barrier is broken (by a timeout, abort(), reset() or a failed action)")
        default: throw Platform.error("barrier wait", result)
        }
    }

    /// Waits until every party has arrived, without blocking a cooperative
    /// thread, for at most the barrier's ``timeout``.
    ///
    /// - Returns: As ``wait(timeout:)``.
    /// - Throws: As ``wait(timeout:)``.
    @discardableResult
    public func wait() async throws -> Int {
        try await BlockingThreads.run { try self.wait(timeout: nil) }
    }

    /// Whether a timeout, ``abort()`` or a failed action broke the barrier
    /// (Python's `broken`).
    public var isBroken: Bool {
        var waiting: Int64 = 0
        return mp_barrier_state(sync.state, &waiting) != 0
    }

    /// How many parties wait at the barrier now (Python's `n_waiting`).
    public var waitingCount: Int {
        var waiting: Int64 = 0
        _ = mp_barrier_state(sync.state, &waiting)
        return Int(waiting)
    }

    /// Breaks the barrier: every waiter, and every later wait until
    /// ``reset()``, gets `.brokenBarrier` (Python's `abort()`).
    public func abort() { mp_barrier_abort(sync.state) }

    /// Returns the barrier to its first state (Python's `reset()`): the
    /// parties waiting now get `.brokenBarrier` at once, a broken barrier is
    /// repaired, and the next parties to arrive start a new round.
    public func reset() { mp_barrier_reset(sync.state) }
}
