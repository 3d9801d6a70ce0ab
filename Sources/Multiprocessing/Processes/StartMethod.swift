import CMultiprocessing
import Synchronization

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
    ///   process runs other threads, and its message names them (the
    ///   library's own threads, named `mp-...`, hold no lock a child needs and
    ///   do not count). Use ``forkserver`` or ``spawn`` there, or
    ///   ``fork(allowingOtherThreads:)`` if you accept the risk. In an async
    ///   `main.swift`, Swift concurrency's threads run from the first `await`
    ///   on: see the README's "The closure forms in an async program".
    ///
    /// The child starts with no signal blocked and every signal at its
    /// default disposition (SIGPIPE stays ignored if it was), whatever the
    /// caller had.
    public static let fork = StartMethod(kind: .fork, allowsOtherThreads: false)

    /// ``fork`` that proceeds even when other threads run.
    ///
    /// - Parameter allowingOtherThreads: `true` to accept that the child may
    ///   deadlock when it touches state another thread held at the fork.
    public static func fork(allowingOtherThreads: Bool) -> StartMethod {
        StartMethod(kind: .fork, allowsOtherThreads: allowingOtherThreads)
    }

    /// The start method of children and pools that do not name one: the one
    /// given to ``setDefault(_:)``, otherwise ``forkserver``, the fastest
    /// method that is safe in any program (Python's `get_start_method()`).
    public static var `default`: StartMethod { chosenDefault.withLock { $0 } ?? .forkserver }

    private static let chosenDefault = ForkSafeMutex<StartMethod?>(nil)

    /// Sets the program-wide ``default``, once (Python's `set_start_method`).
    ///
    /// - Parameter method: ``spawn`` or ``forkserver``.
    /// - Throws: `.invalidArgument` when the default was already set, or for
    ///   ``fork``, which runs closures and is refused in a threaded process:
    ///   name it where it is meant instead.
    public static func setDefault(_ method: StartMethod) throws {
        guard method.kind == .spawn || method.kind == .forkserver else {
            throw MultiprocessingError(
                .invalidArgument,
                "the default start method can be spawn or forkserver, not \(method): "
                    + "pass startMethod: .fork to the children that should be forked")
        }
        try chosenDefault.withLock { chosen in
            if let chosen {
                throw MultiprocessingError(
                    .invalidArgument, "the default start method was already set, to \(chosen); it can be set once")
            }
            chosen = method
        }
    }

    /// The start methods this platform has (Python's `get_all_start_methods()`).
    public static var available: [StartMethod] { [.spawn, .forkserver, .fork] }

    /// How the library started the current process, or `nil` if it did not
    /// (the program itself). A worker forked from a ``ForkingPool``'s zygote
    /// reports ``forkserver``; a child of ``fork(allowingOtherThreads:)``
    /// reports ``fork``.
    public static var current: StartMethod? {
        switch mp_boot_mode() {
        case 1: .spawn
        case 2: .forkserver
        case 3: .fork
        default: nil
        }
    }

    public var description: String {
        switch kind {
        case .spawn: "spawn"
        case .forkserver: "forkserver"
        case .fork: allowsOtherThreads ? "fork (other threads allowed)" : "fork"
        }
    }
}
