#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A value behind a pthread mutex: `Synchronization.Mutex`'s shape, and safe
/// to use in a process made by `fork`.
///
/// Every lock of the library's own state is one of these, because a forked
/// child runs this code too (a `.fork` child, a ``ForkingPool``'s zygote and
/// its workers). `Synchronization.Mutex` is not safe there on Linux: it
/// stores the owner's thread id in the futex word, taken from a per-thread
/// cache (`_swift_stdlib_gettid`, a `static inline` function with a `static
/// __thread` variable, so every unit of code compiled against the header has
/// its own), and `fork` copies the forking thread's caches. In the child some
/// of them hold the parent thread's id and others, first read after the fork,
/// the child's own; a lock taken through one and released through another
/// does not match, and the kernel refuses the release (`FUTEX_UNLOCK_PI`
/// fails with EPERM: "Call to unlock Mutex on a thread which hasn't acquired
/// the lock", seen with strace in every recycled ForkingPool worker). The C
/// library's mutex reads the thread id from the thread's descriptor, which
/// `fork` sets right.
///
/// - Important: A program's own `Synchronization.Mutex` used in a forked
///   child (a ForkingPool's closure, a `.fork` closure child) is exposed to
///   the same fault (inferred from the mechanism, not yet shown by a test).
final class ForkSafeMutex<Value: ~Copyable>: @unchecked Sendable {
    // @unchecked: `value` is only reached with `mutex` held.
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var value: Value

    init(_ initialValue: consuming Value) {
        value = initialValue
        let result = pthread_mutex_init(mutex, nil)
        precondition(result == 0, "pthread_mutex_init: \(String(cString: strerror(result)))")
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
    }

    /// Runs `body` with the lock held and the value to read or change.
    func withLock<Result, Failure: Error>(
        _ body: (inout Value) throws(Failure) -> Result
    ) throws(Failure) -> Result {
        let locked = pthread_mutex_lock(mutex)
        precondition(locked == 0, "pthread_mutex_lock: \(String(cString: strerror(locked)))")
        defer {
            let unlocked = pthread_mutex_unlock(mutex)
            precondition(unlocked == 0, "pthread_mutex_unlock: \(String(cString: strerror(unlocked)))")
        }
        return try body(&value)
    }
}
