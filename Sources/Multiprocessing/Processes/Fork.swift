#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import CMultiprocessing

/// Which side of a ``forkProcess(allowingOtherThreads:)`` the caller is on.
public enum ForkResult: Hashable, Sendable {
    /// In the parent: the new child's process id.
    case parent(childPID: Int32)
    /// In the child.
    case child
}

/// Forks the calling process (Python's `os.fork()`).
///
/// Standard output and error are flushed first, so lines buffered before the
/// fork are printed once, not once per process. The child continues from the
/// same point with a copy-on-write copy of everything; it does not inherit the
/// parent's ``ChildProcess`` objects, fork server or lifeline. The parent must
/// wait for the child (``waitForProcess(_:)``), as with `os.fork`.
///
/// The child keeps the calling thread's signal mask and the process's signal
/// handlers, as `os.fork` does. Every other process the library starts (a
/// ``ChildProcess`` with any start method, pool workers, a ``ForkingPool``'s
/// zygote, the fork server) begins with no signal blocked and every signal at
/// its default disposition instead, whatever this process had blocked or
/// ignored (SIGPIPE stays ignored if it was).
///
/// - Parameter allowingOtherThreads: `true` to fork even though other threads
///   run. See ``StartMethod/fork`` for why this risks a silent deadlock in the child.
/// - Returns: `.parent(childPID:)` in the parent, `.child` in the child.
/// - Throws: `.unsafeFork` when other threads run and `allowingOtherThreads`
///   is `false`; `.systemCall` when the kernel refuses the fork.
///
/// The corresponding C function is `fork`.
public func forkProcess(allowingOtherThreads: Bool = false) throws -> ForkResult {
    try prepareToFork(
        allowingOtherThreads: allowingOtherThreads,
        alternatives: "Use a ChildProcess with StartMethod.forkserver or .spawn, or pass allowingOtherThreads: true")
    let pid = try Platform.fork()
    if pid > 0 { return .parent(childPID: pid) }
    ChildRuntime.forgetParentAfterFork()
    return .child
}

/// Waits for a process started with ``forkProcess(allowingOtherThreads:)`` to end and reaps it.
///
/// - Parameter pid: The child's process id.
/// - Returns: How it ended.
/// - Throws: `.systemCall` (ECHILD) when `pid` is not a child of this process.
///
/// The corresponding C function is `waitpid`.
@available(*, noasync, message: "Blocks the calling thread")
public func waitForProcess(_ pid: Int32) throws -> TerminationStatus {
    TerminationStatus(waitStatus: try Platform.reap(pid))
}

/// What each of the library's forks (``forkProcess(allowingOtherThreads:)``,
/// a ``StartMethod/fork`` child, a ``ForkingPool``'s zygote) does first: a
/// spawned child still starting takes over here, and the fork is refused
/// while other threads run, unless allowed.
///
/// - Parameter alternatives: What the caller can do instead, for the message.
func prepareToFork(allowingOtherThreads: Bool, alternatives: String) throws {
    ChildRuntime.takeOverIfPending()
    if !allowingOtherThreads { try refuseForkWithOtherThreads(alternatives: alternatives) }
}

/// Throws `.unsafeFork` when threads other than the caller (and the
/// library's own, which hold no lock a child needs: see ``ThreadCensus``) run.
///
/// - Parameter alternatives: What the caller can do instead, for the message.
func refuseForkWithOtherThreads(alternatives: String) throws {
    let census = ThreadCensus.take()
    let others = census.others.count
    guard others > 0 else { return }
    throw MultiprocessingError(
        .unsafeFork,
        "fork refused: this process runs \(others) other thread\(others == 1 ? "" : "s") besides the library's own: "
            + "\(census.othersDescription). A forked child deadlocks if one of them held a runtime lock at the fork. "
            + alternatives + " to accept the risk")
}
