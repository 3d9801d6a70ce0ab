#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

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
/// `multiprocessing.Lock`), that survives a holder killed with SIGKILL.
///
/// The lock is a robust, process-shared pthread mutex in a ``SharedMemory``
/// segment. If a process dies holding it, the next process to lock it is told
/// so (``LockAcquisition/previousOwnerDied``) instead of waiting forever.
///
/// Hand it to children inside their task values, or let forked children
/// inherit it. It is owned by a thread: unlock it on the thread that locked it.
///
/// The corresponding C functions are `pthread_mutex_lock` and
/// `pthread_mutex_consistent`, with `PTHREAD_PROCESS_SHARED` and `PTHREAD_MUTEX_ROBUST`.
public final class ProcessLock: Sendable, Codable {
    let memory: SharedMemory

    private var mutex: UnsafeMutablePointer<pthread_mutex_t> {
        memory.baseAddress.assumingMemoryBound(to: pthread_mutex_t.self)
    }

    /// Creates an unlocked lock.
    ///
    /// - Parameter recursive: Whether the thread that holds the lock may take
    ///   it again (Python's `RLock`); it must then release it as many times.
    /// - Throws: `.systemCall` when the memory or the mutex cannot be set up.
    public init(recursive: Bool = false) throws {
        memory = try SharedMemory(size: MemoryLayout<pthread_mutex_t>.stride)
        try Self.initialize(
            memory.baseAddress.bindMemory(to: pthread_mutex_t.self, capacity: 1), recursive: recursive)
    }

    /// Sets up a robust, process-shared mutex in shared memory.
    static func initialize(_ mutex: UnsafeMutablePointer<pthread_mutex_t>, recursive: Bool) throws {
        var attributes = pthread_mutexattr_t()
        pthread_mutexattr_init(&attributes)
        defer { pthread_mutexattr_destroy(&attributes) }
        pthread_mutexattr_setpshared(&attributes, Int32(PTHREAD_PROCESS_SHARED))
        #if canImport(Glibc)
            pthread_mutexattr_setrobust(&attributes, Int32(PTHREAD_MUTEX_ROBUST))
            if recursive { pthread_mutexattr_settype(&attributes, Int32(PTHREAD_MUTEX_RECURSIVE)) }
        #endif
        let result = pthread_mutex_init(mutex, &attributes)
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
    /// - Throws: `.systemCall` if the lock is unusable (a previous owner died
    ///   and the next one released it without marking it consistent, which
    ///   this type never does).
    @available(*, noasync, message: "Blocks the calling thread; a lock is owned by the thread that takes it")
    @discardableResult
    public func lock() throws -> LockAcquisition {
        try acquisition(pthread_mutex_lock(mutex), "pthread_mutex_lock")!
    }

    /// Takes the lock if it is free.
    ///
    /// - Returns: `nil` if another thread or process holds it.
    @available(*, noasync, message: "A lock is owned by the thread that takes it")
    public func tryLock() throws -> LockAcquisition? {
        try acquisition(pthread_mutex_trylock(mutex), "pthread_mutex_trylock")
    }

    /// Waits at most `timeout` for the lock (Python's `acquire(timeout=)`).
    ///
    /// - Returns: `nil` when the time ran out.
    @available(*, noasync, message: "Blocks the calling thread; a lock is owned by the thread that takes it")
    public func lock(timeout: Duration) throws -> LockAcquisition? {
        #if canImport(Glibc)
            var deadline = Platform.deadline(after: timeout, on: CLOCK_REALTIME)
            return try acquisition(pthread_mutex_timedlock(mutex, &deadline), "pthread_mutex_timedlock")
        #else
            let deadline = ContinuousClock.now + timeout
            while ContinuousClock.now < deadline {
                if let taken = try tryLock() { return taken }
                usleep(1000)
            }
            return nil
        #endif
    }

    /// Releases the lock.
    @available(*, noasync, message: "A lock is owned by the thread that takes it")
    public func unlock() {
        let result = pthread_mutex_unlock(mutex)
        precondition(
            result == 0, "ProcessLock.unlock() by a thread that does not hold it (\(Platform.errorName(result)))")
    }

    /// Runs `body` holding the lock.
    ///
    /// - Parameter body: Gets how the lock was acquired: after
    ///   ``LockAcquisition/previousOwnerDied`` it should repair the data the lock protects.
    @available(*, noasync, message: "Blocks the calling thread; a lock is owned by the thread that takes it")
    public func withLock<R>(_ body: (LockAcquisition) throws -> R) throws -> R {
        let acquisition = try lock()
        defer { unlock() }
        return try body(acquisition)
    }

    /// Runs `body` holding the lock, from async code without blocking a
    /// cooperative thread.
    ///
    /// A pthread mutex belongs to the thread that took it, so the whole
    /// critical section (taking the lock, `body`, releasing it) runs on one
    /// of the library's blocking threads, and `body` is synchronous.
    ///
    /// - Parameter body: Gets how the lock was acquired.
    public func withLock<R: Sendable>(_ body: @escaping @Sendable (LockAcquisition) throws -> R) async throws -> R {
        try await BlockingThreads.run { try self.withLock(body) }
    }

    private func acquisition(_ result: Int32, _ call: String) throws -> LockAcquisition? {
        switch result {
        case 0: return .acquired
        case EBUSY, ETIMEDOUT: return nil
        #if canImport(Glibc)
            case EOWNERDEAD:
                pthread_mutex_consistent(mutex)
                return .previousOwnerDied
        #endif
        default: throw Platform.error(call, result)
        }
    }
}
