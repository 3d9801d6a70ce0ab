/// How a child process is started (Python's start methods).
///
/// | method | cost per start (this project's benchmark) | runs | safe in any program |
/// |---|---|---|---|
/// | ``forkserver`` | about 1 ms | task values | yes |
/// | ``spawn`` | 3 to 10 ms | task values | yes |
/// | ``fork`` | below 1 ms | task values and closures | only while single-threaded |
///
/// ``default`` is ``forkserver``: the fastest method that is safe in a
/// program that runs threads (every program that used Swift concurrency or
/// Dispatch does). See the "Start methods" article for the measurements.
public struct StartMethod: Hashable, Sendable, CustomStringConvertible {
    enum Kind: Hashable, Sendable {
        case spawn, forkserver, fork
        /// A fork server made by forking this process (a ``ForkingPool``'s),
        /// reached through this control socket.
        case zygote(control: Int32)
    }

    let kind: Kind
    let allowsOtherThreads: Bool

    /// Re-executes the program's own binary; a hook that runs before `main`
    /// takes the new process over and runs the task. The child shares nothing
    /// with the parent but the descriptors it is handed.
    public static let spawn = StartMethod(kind: .spawn, allowsOtherThreads: false)

    /// Asks a fork server for the child. The server is started once, by spawn,
    /// when first needed; it never runs Swift code or threads, so forking it is
    /// safe, and it exits with the program.
    public static let forkserver = StartMethod(kind: .forkserver, allowsOtherThreads: false)

    /// Forks the calling process: the child starts with a copy-on-write copy
    /// of everything, so it can run a closure that captures any state.
    ///
    /// - Important: `fork()` copies only the calling thread. If another thread
    ///   holds a lock of the Swift runtime, of Dispatch or of malloc's callers at
    ///   that moment, the child deadlocks, silently and at random. Starting a
    ///   process with this method therefore throws `.unsafeFork` when the
    ///   process runs other threads. Use ``forkserver`` or ``spawn`` there, or
    ///   ``fork(allowingOtherThreads:)`` if you accept the risk.
    public static let fork = StartMethod(kind: .fork, allowsOtherThreads: false)

    /// ``fork`` that proceeds even when other threads run.
    ///
    /// - Parameter allowingOtherThreads: `true` to accept that the child may
    ///   deadlock when it touches state another thread held at the fork.
    public static func fork(allowingOtherThreads: Bool) -> StartMethod {
        StartMethod(kind: .fork, allowsOtherThreads: allowingOtherThreads)
    }

    /// The fastest start method that is safe in any program: ``forkserver``.
    public static var `default`: StartMethod { .forkserver }

    public var description: String {
        switch kind {
        case .spawn: "spawn"
        case .forkserver: "forkserver"
        case .fork: allowsOtherThreads ? "fork (other threads allowed)" : "fork"
        case .zygote: "fork (from the pool's zygote)"
        }
    }
}
