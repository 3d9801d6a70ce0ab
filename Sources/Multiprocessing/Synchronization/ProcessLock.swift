#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import CMultiprocessing

/// How a lock was acquired.
public enum LockAcquisition: Sendable, Hashable {
    /// The lock was free, or released by its owner.
    case acquired
    /// The previous owner died while holding the lock. The lock is yours and
    /// consistent again, but the data it protects may have been left half
    /// updated: check or repair it before you release the lock.
    case previousOwnerDied
}

/// A mutual-exclusion lock shared by processes (Python's
/// `multiprocessing.Lock`, and with `recursive: true`, `RLock`), that
/// survives a holder killed with SIGKILL.
///
/// The lock is a robust, process-shared pthread mutex in a ``SharedMemory``
/// segment. If a process dies holding it, the next process to lock it is told
/// so (``LockAcquisition/previousOwnerDied``) instead of waiting forever.
///
/// Hand it to children inside their task values, or let forked children
/// inherit it. Its ``description`` names the process and thread that hold
/// it, and for a recursive lock, how many times.
///
/// ```swift
/// let lock = try ProcessLock()
/// try lock.withLock { acquisition in
///     if acquisition == .previousOwnerDied { repairSharedState() }
///     updateSharedState()
/// }
/// ```
///
/// - Important: A lock is owned by the thread that took it: only that
///   thread may unlock it, and unlocking it anywhere else throws
///   `.lockNotHeld`. Python's `Lock` may be released by another process
///   than the one that acquired it; for that pattern (a process hands a
///   "permit" to another) use a ``ProcessSemaphore`` made with `value: 1, maximum: 1`.
///
/// The corresponding C functions are `pthread_mutex_lock`,
/// `pthread_mutex_unlock` and `pthread_mutex_consistent`, with
/// `PTHREAD_PROCESS_SHARED`, `PTHREAD_MUTEX_ROBUST` and `PTHREAD_MUTEX_ERRORCHECK`
/// (or `PTHREAD_MUTEX_RECURSIVE`).
public final class ProcessLock: Sendable, Codable, CustomStringConvertible {
    let memory: SharedMemory

    private var state: SharedLockState {
        SharedLockState(memory.baseAddress.assumingMemoryBound(to: mp_lock.self), typeName: "ProcessLock")
    }

    /// Creates an unlocked lock.
    ///
    /// - Parameter recursive: Whether the thread that holds the lock may take
    ///   it again (Python's `RLock`); it must then release it as many times.
    /// - Throws: `.systemCall` when the memory or the mutex cannot be set up.
    public init(recursive: Bool = false) throws {
        memory = try SharedMemory(size: MemoryLayout<mp_lock>.stride)
        let result = mp_lock_init(memory.baseAddress.bindMemory(to: mp_lock.self, capacity: 1), recursive ? 1 : 0)
        if result != 0 { throw Platform.error("pthread_mutex_init", result) }
    }

    public init(from decoder: any Decoder) throws {
        memory = try SharedMemory(from: decoder)
    }

    public func encode(to encoder: any Encoder) throws {
        try memory.encode(to: encoder)
    }

    /// Waits for the lock and takes it.
    ///
    /// - Returns: Whether the previous owner died holding it.
    /// - Throws: `.invalidArgument` when the calling thread already holds
    ///   this lock and it is not recursive (taking it would wait forever);
    ///   `.systemCall` if the lock is unusable (a previous owner died and the
    ///   next one released it without marking it consistent, which this type never does).
    @available(*, noasync, message: "Blocks the calling thread; a lock is owned by the thread that takes it")
    @discardableResult
    public func lock() throws -> LockAcquisition {
        // Waiting as long as it takes ends only with the lock or an error.
        try state.acquire(timeout: nil) ?? .acquired
    }

    /// Takes the lock if it is free.
    ///
    /// - Returns: `nil` if another thread or process holds it.
    /// - Throws: As ``lock()``.
    @available(*, noasync, message: "A lock is owned by the thread that takes it")
    public func tryLock() throws -> LockAcquisition? {
        try state.acquire(timeout: .zero)
    }

    /// Waits at most `timeout` for the lock (Python's `acquire(timeout=)`).
    ///
    /// - Returns: `nil` when the time ran out.
    /// - Throws: As ``lock()``.
    @available(*, noasync, message: "Blocks the calling thread; a lock is owned by the thread that takes it")
    public func lock(timeout: Duration) throws -> LockAcquisition? {
        try state.acquire(timeout: timeout)
    }

    /// Releases the lock (a recursive lock: once).
    ///
    /// - Throws: `.lockNotHeld` when the calling thread does not hold the
    ///   lock: it is free, another thread or process holds it, or a recursive
    ///   lock was released more times than it was taken. The lock is left as it was.
    @available(*, noasync, message: "A lock is owned by the thread that takes it")
    public func unlock() throws {
        try state.release()
    }

    /// Runs `body` holding the lock.
    ///
    /// - Parameter body: Gets how the lock was acquired: after
    ///   ``LockAcquisition/previousOwnerDied`` it should repair the data the lock protects.
    /// - Returns: What `body` returns.
    /// - Throws: What `body` throws, or as ``lock()``.
    public func withLock<R>(_ body: (LockAcquisition) throws -> R) throws -> R {
        try state.withLock(body)
    }

    /// Runs `body` holding the lock, from async code without blocking a
    /// cooperative thread.
    ///
    /// A pthread mutex belongs to the thread that took it, so the whole
    /// critical section (taking the lock, `body`, releasing it) runs on one
    /// of the library's blocking threads, and `body` is synchronous.
    ///
    /// - Parameter body: Gets how the lock was acquired.
    /// - Returns: What `body` returns.
    /// - Throws: What `body` throws, or as ``lock()``.
    public func withLock<R: Sendable>(_ body: @escaping @Sendable (LockAcquisition) throws -> R) async throws -> R {
        try await BlockingThreads.run { try self.withLock(body) }
    }

    /// Who holds the lock now (Python's `repr` of a `Lock` or an `RLock`):
    /// `ProcessLock(unlocked)`, `ProcessLock(owner: pid 4242, thread 4250)`,
    /// with `, the calling thread` when that is the holder, and for a
    /// recursive lock, `ProcessLock(recursive, owner: ..., depth: 2)`.
    ///
    /// The holder records itself in the lock's shared memory when it takes
    /// the lock; the description is a snapshot that may be stale at once.
    public var description: String { state.description }
}

/// The lock of a ``ProcessLock`` or a ``ProcessCondition``: an `mp_lock` in
/// shared memory (lock.c), and the Swift errors for its C results.
struct SharedLockState {
    let lock: UnsafeMutablePointer<mp_lock>
    /// The public type, for messages.
    let typeName: String

    init(_ lock: UnsafeMutablePointer<mp_lock>, typeName: String) {
        self.lock = lock
        self.typeName = typeName
    }

    /// Takes the lock, waiting at most `timeout` (`nil`: as long as it takes).
    ///
    /// - Returns: `nil` when it was not taken in time.
    func acquire(timeout: Duration?) throws -> LockAcquisition? {
        switch mp_lock_acquire(lock, Platform.timeoutNanoseconds(timeout)) {
        case 0: return .acquired
        case EOWNERDEAD: return .previousOwnerDied
        case EBUSY, ETIMEDOUT: return nil
        case EDEADLK:
            throw MultiprocessingError(
                .invalidArgument,
                "the calling thread already holds this \(typeName): taking it again would wait forever; "
                    + "a lock its holder may take again is ProcessLock(recursive: true)")
        case let error: throw Platform.error("pthread_mutex_lock", error)
        }
    }

    func release() throws {
        let result = mp_lock_release(lock)
        if result == EPERM {
            throw MultiprocessingError(
                .lockNotHeld,
                "unlock of a \(typeName) the calling thread does not hold (\(description)): only the thread "
                    + "that took a lock releases it; for a permit that another process releases, "
                    + "use ProcessSemaphore(value: 1, maximum: 1)",
                errno: result)
        }
        if result != 0 { throw Platform.error("pthread_mutex_unlock", result) }
    }

    func withLock<R>(_ body: (LockAcquisition) throws -> R) throws -> R {
        let acquisition = try acquire(timeout: nil) ?? .acquired
        let result: R
        do {
            result = try body(acquisition)
        } catch {
            // The body's error is the one to report.
            try? release()
            throw error
        }
        try release()
        return result
    }

    var description: String {
        var pid: Int32 = 0
        var thread: Int32 = 0
        var mine: Int32 = 0
        let depth = mp_lock_owner(lock, &pid, &thread, &mine)
        let recursive = lock.pointee.recursive != 0
        var parts = recursive ? ["recursive"] : []
        if depth == 0 {
            parts.append("unlocked")
        } else {
            parts.append("owner: pid \(pid), thread \(thread)")
            if mine != 0 { parts.append("the calling thread") }
            if recursive { parts.append("depth: \(depth)") }
        }
        return "\(typeName)(\(parts.joined(separator: ", ")))"
    }
}
