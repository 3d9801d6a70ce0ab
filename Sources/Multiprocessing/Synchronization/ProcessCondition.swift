#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A condition variable shared by processes, with its own lock (Python's
/// `multiprocessing.Condition`).
///
/// ```swift
/// try condition.withLock { _ in
///     while !ready.value { try condition.wait() }
/// }
/// // elsewhere:
/// try condition.withLock { _ in ready.value = true; condition.notifyAll() }
/// ```
///
/// Like ``ProcessLock``, its lock is robust: a process killed holding it does
/// not wedge the others, and the next owner learns of it.
public final class ProcessCondition: Sendable, Codable {
    private let memory: SharedMemory

    private var mutex: UnsafeMutablePointer<pthread_mutex_t> {
        memory.baseAddress.assumingMemoryBound(to: pthread_mutex_t.self)
    }

    private var condition: UnsafeMutablePointer<pthread_cond_t> {
        (memory.baseAddress + Self.conditionOffset).assumingMemoryBound(to: pthread_cond_t.self)
    }

    private static let conditionOffset =
        (MemoryLayout<pthread_mutex_t>.stride + MemoryLayout<pthread_cond_t>.alignment - 1)
        / MemoryLayout<pthread_cond_t>.alignment * MemoryLayout<pthread_cond_t>.alignment

    /// Creates a condition and its lock.
    public init() throws {
        memory = try SharedMemory(size: Self.conditionOffset + MemoryLayout<pthread_cond_t>.stride)
        try ProcessLock.initialize(
            memory.baseAddress.bindMemory(to: pthread_mutex_t.self, capacity: 1), recursive: false)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        defer { pthread_condattr_destroy(&attributes) }
        pthread_condattr_setpshared(&attributes, Int32(PTHREAD_PROCESS_SHARED))
        #if canImport(Glibc)
            pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        #endif
        let condition = (memory.baseAddress + Self.conditionOffset).bindMemory(to: pthread_cond_t.self, capacity: 1)
        let result = pthread_cond_init(condition, &attributes)
        if result != 0 { throw Platform.error("pthread_cond_init", result) }
    }

    /// Runs `body` holding the condition's lock.
    @available(*, noasync, message: "Blocks the calling thread; the lock is owned by the thread that takes it")
    public func withLock<R>(_ body: (LockAcquisition) throws -> R) throws -> R {
        var acquisition = LockAcquisition.acquired
        switch pthread_mutex_lock(mutex) {
        case 0: break
        #if canImport(Glibc)
            case EOWNERDEAD:
                pthread_mutex_consistent(mutex)
                acquisition = .previousOwnerDied
        #endif
        case let error: throw Platform.error("pthread_mutex_lock", error)
        }
        defer { pthread_mutex_unlock(mutex) }
        return try body(acquisition)
    }

    /// Runs `body` holding the condition's lock, from async code without
    /// blocking a cooperative thread: the critical section, including any
    /// ``wait(timeout:)`` inside it, runs on one of the library's blocking threads.
    public func withLock<R: Sendable>(_ body: @escaping @Sendable (LockAcquisition) throws -> R) async throws -> R {
        try await BlockingThreads.run { try self.withLock(body) }
    }

    /// Releases the lock, waits to be notified (or `timeout`), and takes the lock again.
    /// Call it inside ``withLock(_:)``, in a loop that checks what you wait for.
    ///
    /// - Returns: `false` when the time ran out.
    @available(*, noasync, message: "Blocks the calling thread")
    @discardableResult
    public func wait(timeout: Duration? = nil) throws -> Bool {
        var result: Int32
        if let timeout {
            #if canImport(Glibc)
                var deadline = Platform.deadline(after: timeout, on: CLOCK_MONOTONIC)
            #else
                var deadline = Platform.deadline(after: timeout, on: CLOCK_REALTIME)
            #endif
            result = pthread_cond_timedwait(condition, mutex, &deadline)
        } else {
            result = pthread_cond_wait(condition, mutex)
        }
        #if canImport(Glibc)
            if result == EOWNERDEAD {
                pthread_mutex_consistent(mutex)
                result = 0
            }
        #endif
        if result == ETIMEDOUT { return false }
        if result != 0 { throw Platform.error("pthread_cond_wait", result) }
        return true
    }

    /// Wakes one waiter.
    public func notify() { pthread_cond_signal(condition) }

    /// Wakes every waiter.
    public func notifyAll() { pthread_cond_broadcast(condition) }
}

/// The simplest queue (Python's `SimpleQueue`): put, get, isEmpty and close,
/// without a size limit, timeouts or task accounting. It keeps its values in
/// the same kind of shared ring as ``ProcessQueue``.
public struct SimpleProcessQueue<Element: Codable & Sendable>: Sendable, Codable {
    private let queue: ProcessQueue<Element>

    /// Creates an empty queue.
    public init() throws { queue = try ProcessQueue() }

    /// Puts a value at the end; an encoding error is thrown here.
    @available(*, noasync, message: "Use the async put in async code")
    public func put(_ element: Element) throws { try queue.put(element) }

    /// Puts a value at the end without blocking a cooperative thread.
    public func put(_ element: Element) async throws { try await queue.put(element) }

    /// Takes the value at the front, waiting as long as it takes.
    ///
    /// - Throws: `.endOfStream` once the queue is closed and empty.
    @available(*, noasync, message: "Use the async get in async code")
    public func get() throws -> Element { try queue.get() }

    /// Takes the value at the front without blocking a cooperative thread.
    public func get() async throws -> Element { try await queue.get() }

    /// Whether no value is waiting.
    public var isEmpty: Bool { queue.isEmpty }

    /// Closes the queue: puts fail; gets take what is left, then end.
    public func close() { queue.close() }
}
