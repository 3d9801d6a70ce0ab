#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import CMultiprocessing

/// Processes: the one fork, waiting for a child, whether a process exists.
extension Platform {
    /// Waits for the child `pid` to end and reaps it: the library's one `waitpid`.
    ///
    /// - Returns: Its wait status.
    /// - Throws: `.systemCall` with ECHILD when it is not a child of this
    ///   process, or was reaped by something else (SIGCHLD set to SIG_IGN).
    static func reap(_ pid: pid_t) throws -> Int32 {
        var status: Int32 = 0
        try retrying("waitpid") { waitpid(pid, &status, 0) }
        return status
    }

    /// Whether a process `pid` exists (a zombie still does): it can be signalled, or it is another user's.
    static func exists(_ pid: pid_t) -> Bool {
        systemKill(pid, 0) == 0 || errno != ESRCH
    }

    /// Whether the child `pid` has ended, leaving it to be reaped.
    static func hasEnded(_ pid: pid_t) -> Bool {
        var status: Int32 = 0
        return waitpid(pid, &status, Int32(WNOHANG) | Int32(WNOWAIT)) == pid
    }

    /// The library's one fork: standard output and error are flushed first
    /// (so lines buffered before are printed once, not once per process).
    ///
    /// - Returns: 0 in the child, the child's pid in the parent.
    /// - Throws: `.systemCall` when the kernel refuses.
    static func fork() throws -> pid_t {
        fflush(nil)
        let pid = systemFork()
        if pid < 0 { throw error("fork") }
        return pid
    }
}

private func systemFork() -> pid_t {
    #if canImport(Glibc)
        Glibc.fork()
    #else
        Darwin.fork()
    #endif
}

func systemKill(_ pid: pid_t, _ signal: Int32) -> Int32 {
    #if canImport(Glibc)
        Glibc.kill(pid, signal)
    #else
        Darwin.kill(pid, signal)
    #endif
}
