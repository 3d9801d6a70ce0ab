#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import CMultiprocessing
import Synchronization

/// Dedicated threads for blocking system calls made on behalf of async code.
///
/// A blocking `poll` or `read` on a thread of Swift's cooperative pool would
/// starve every other task (the pool has one thread per core), so async forms
/// hand the blocking part to these threads and suspend. Threads are created on
/// demand and parked when idle.
final class BlockingThreads: @unchecked Sendable {
    // @unchecked: `jobs` and `idle` are only touched with `lock` held.
    static let shared = BlockingThreads()

    private let lock = ConditionLock()
    private var jobs = FrontQueue<@Sendable () -> Void>()
    private var idle = 0

    private init() {}

    /// Whether this process (or the parent it was forked from) ever started one.
    private static let started = Atomic(false)

    /// In a forked child: the parent's threads, their queue and the state of
    /// the lock (another thread may have held it) did not come along. Writes
    /// nothing when there never were any threads.
    static func forgetAfterFork() {
        guard started.load(ordering: .relaxed) else { return }
        shared.forgetThreads()
    }

    private func forgetThreads() {
        lock.reinitializeAfterFork()
        jobs = FrontQueue()
        idle = 0
    }

    /// Runs `body` on a blocking thread and returns its result.
    static func run<R: Sendable>(_ body: @escaping @Sendable () throws -> R) async throws -> R {
        try await withCheckedThrowingContinuation { continuation in
            shared.submit { continuation.resume(with: Result { try body() }) }
        }
    }

    private func submit(_ job: @escaping @Sendable () -> Void) {
        let startThread = lock.withLock {
            jobs.append(job)
            if idle == 0 { return true }
            lock.signal()
            return false
        }
        if startThread {
            Self.started.store(true, ordering: .relaxed)
            startThreadRunning(named: ThreadCensus.blockingThreadName) { self.serve() }
        }
    }

    private func serve() {
        lock.lock()
        while true {
            while jobs.isEmpty {
                idle += 1
                lock.wait()
                idle -= 1
            }
            let job = jobs.removeFirst()
            lock.unlock()
            job()
            lock.lock()
        }
    }
}

private final class ThreadBody {
    let body: () -> Void
    init(_ body: @escaping () -> Void) { self.body = body }
}

/// Starts a detached pthread running `body`, named `name` (at most 15
/// bytes: what `top -H` and /proc/self/task/*/comm show).
func startThreadRunning(named name: String, _ body: @escaping @Sendable () -> Void) {
    let box = Unmanaged.passRetained(
        ThreadBody {
            mp_set_thread_name(name)
            body()
        }
    ).toOpaque()
    var attributes = pthread_attr_t()
    pthread_attr_init(&attributes)
    #if canImport(Glibc)
        var thread = pthread_t()
    #else
        var thread: pthread_t?
    #endif
    let result = pthread_create(
        &thread, &attributes,
        { raw in
            #if canImport(Glibc)
                let body = Unmanaged<ThreadBody>.fromOpaque(raw!).takeRetainedValue()
            #else
                let body = Unmanaged<ThreadBody>.fromOpaque(raw).takeRetainedValue()
            #endif
            body.body()
            return nil
        }, box)
    pthread_attr_destroy(&attributes)
    precondition(result == 0, "pthread_create failed: \(Platform.errorName(result))")
    // Named before this returns, as well as by itself: a fork right after
    // (a second ForkingPool) must already see it as the library's. Detached
    // only then, so that the thread cannot have ended and been freed.
    #if canImport(Glibc)
        mp_name_thread(thread, name)
        pthread_detach(thread)
    #else
        if let thread { pthread_detach(thread) }
    #endif
}
