#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import CMultiprocessing

/// A condition variable shared by processes, with its own lock (Python's
/// `multiprocessing.Condition`).
///
/// ```swift
/// try condition.withLock { _ in
///     try condition.wait(for: { ready.value })
/// }
/// // elsewhere:
/// try condition.withLock { _ in ready.value = true; condition.notifyAll() }
/// ```
///
/// Like ``ProcessLock``, its lock is robust: a process killed holding it does
/// not wedge the others, and the next owner learns of it.
///
/// The corresponding C functions are `pthread_cond_wait`,
/// `pthread_cond_timedwait`, `pthread_cond_signal` and `pthread_cond_broadcast`,
/// with `PTHREAD_PROCESS_SHARED`.
public final class ProcessCondition: Sendable, Codable {
    private let memory: SharedMemory

    private var condition: UnsafeMutablePointer<mp_condition> {
        memory.baseAddress.assumingMemoryBound(to: mp_condition.self)
    }

    private var lock: SharedLockState {
        // The lock is the first field of the C struct.
        SharedLockState(
            UnsafeMutableRawPointer(condition).assumingMemoryBound(to: mp_lock.self), typeName: "ProcessCondition")
    }

    /// Creates a condition and its lock.
    ///
    /// - Throws: `.systemCall` when the memory, the mutex or the condition
    ///   variable cannot be set up.
    public init() throws {
        memory = try SharedMemory(size: MemoryLayout<mp_condition>.stride)
        let result = mp_condition_init(memory.baseAddress.bindMemory(to: mp_condition.self, capacity: 1))
        if result != 0 { throw Platform.error("pthread_cond_init", result) }
    }

    /// Runs `body` holding the condition's lock.
    ///
    /// - Parameter body: Gets how the lock was acquired: after
    ///   ``LockAcquisition/previousOwnerDied`` it should repair the data the lock protects.
    /// - Returns: What `body` returns.
    /// - Throws: What `body` throws; `.invalidArgument` when the calling
    ///   thread already holds the lock.
    public func withLock<R>(_ body: (LockAcquisition) throws -> R) throws -> R {
        try lock.withLock(body)
    }

    /// Runs `body` holding the condition's lock, from async code without
    /// blocking a cooperative thread: the critical section, including any
    /// ``wait(timeout:)`` inside it, runs on one of the library's blocking threads.
    ///
    /// - Parameter body: Gets how the lock was acquired.
    /// - Returns: What `body` returns.
    /// - Throws: What `body` throws.
    public func withLock<R: Sendable>(_ body: @escaping @Sendable (LockAcquisition) throws -> R) async throws -> R {
        try await BlockingThreads.run { try self.withLock(body) }
    }

    /// Releases the lock, waits to be notified (or `timeout`), and takes the lock again.
    /// Call it inside ``withLock(_:)-4frge``, in a loop that checks what you wait
    /// for, or use ``wait(for:timeout:)``, which is that loop.
    ///
    /// - Parameter timeout: How long to wait; `nil` waits as long as it takes.
    /// - Returns: `false` when the time ran out.
    /// - Throws: `.lockNotHeld` when called outside ``withLock(_:)-4frge`` (the
    ///   calling thread does not hold the lock).
    @available(*, noasync, message: "Blocks the calling thread")
    @discardableResult
    public func wait(timeout: Duration? = nil) throws -> Bool {
        let result = mp_condition_wait(condition, Platform.timeoutNanoseconds(timeout))
        switch result {
        case 0: return true
        case ETIMEDOUT: return false
        case EPERM:
            throw MultiprocessingError(
                .lockNotHeld,
                "wait() on a ProcessCondition outside its withLock: the calling thread does not hold its lock",
                errno: result)
        default: throw Platform.error("pthread_cond_wait", result)
        }
    }

    /// Waits until `predicate` is true (Python's `wait_for`): checks it, and
    /// while it is false, waits to be notified and checks it again, until
    /// `timeout` has passed in all. Call it inside ``withLock(_:)-4frge``; the
    /// predicate runs holding the lock.
    ///
    /// ```swift
    /// let ready = try condition.withLock { _ in
    ///     try condition.wait(for: { queueLength.value > 0 }, timeout: .seconds(5))
    /// }
    /// ```
    ///
    /// - Parameters:
    ///   - predicate: What to wait for.
    ///   - timeout: How long to wait in all; `nil` waits as long as it takes.
    /// - Returns: The predicate's last result: `false` when the time ran out first.
    /// - Throws: What `predicate` throws; as ``wait(timeout:)``.
    @available(*, noasync, message: "Blocks the calling thread")
    public func wait(for predicate: () throws -> Bool, timeout: Duration? = nil) throws -> Bool {
        let deadline = timeout.map { ContinuousClock.now + $0 }
        var result = try predicate()
        while !result {
            let left = deadline.map { $0 - ContinuousClock.now }
            if let left, left <= .zero { break }
            try wait(timeout: left)
            result = try predicate()
        }
        return result
    }

    /// Wakes up to `count` of the processes and threads waiting (Python's
    /// `notify(n)`); a `count` of 0 or less wakes none. Call it holding the
    /// lock, after changing what the waiters check: a waiter that has not
    /// started waiting yet then sees the change when it checks.
    ///
    /// - Parameter count: How many waiters to wake at most.
    public func notify(count: Int = 1) {
        if count > 0 { mp_condition_notify(condition, Int64(count)) }
    }

    /// Wakes every waiter (Python's `notify_all()`).
    public func notifyAll() { mp_condition_notify(condition, -1) }
}
