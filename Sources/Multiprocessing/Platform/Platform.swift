#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import CMultiprocessing

/// The only place that turns C results into Swift errors.
///
/// Each wrapper makes one system call, applies its EINTR policy (retry, except
/// for `close`), and throws ``MultiprocessingError`` with the call's name and
/// errno on failure. EBADF and EFAULT mean the library has a bug and trap.
enum Platform {
    static func errorName(_ code: Int32) -> String {
        guard let text = strerror(code) else { return "errno \(code)" }
        return "\(String(cString: text)), errno \(code)"
    }

    static func error(_ call: String, _ code: Int32 = errno) -> MultiprocessingError {
        MultiprocessingError(.systemCall, "\(call) failed", errno: code)
    }

    /// Runs `body` until it does not fail with EINTR; throws on any other failure.
    @discardableResult
    static func retrying<R: BinaryInteger>(_ call: String, _ body: () -> R) throws -> R {
        while true {
            let result = body()
            if result >= 0 { return result }
            let code = errno
            if code == EINTR { continue }
            precondition(code != EBADF && code != EFAULT, "\(call): \(errorName(code)): a library bug")
            throw error(call, code)
        }
    }

    /// Closes a descriptor. Never retried: on Linux the descriptor is gone even when close reports EINTR.
    static func close(_ fd: Int32) {
        guard fd >= 0 else { return }
        _ = systemClose(fd)
    }

    static func makePipe() throws -> (read: Int32, write: Int32) {
        var fds: [Int32] = [-1, -1]
        try retrying("pipe2") { mp_pipe_cloexec(&fds) }
        return (fds[0], fds[1])
    }

    /// A close-on-exec descriptor of a new, empty, nameless file in memory,
    /// freed when its last descriptor closes.
    static func makeAnonymousFile() throws -> Int32 {
        try retrying("memfd_create") { mp_anonymous_file("swift-multiprocessing") }
    }

    /// A connected pair of close-on-exec Unix sockets that keep message
    /// boundaries (SOCK_SEQPACKET), for messages that carry descriptors.
    static func makeMessageSocketPair() throws -> [Int32] {
        var pair: [Int32] = [-1, -1]
        #if canImport(Glibc)
            let type = Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        #else
            let type = SOCK_STREAM
        #endif
        try retrying("socketpair") { socketpair(AF_UNIX, type, 0, &pair) }
        return pair
    }

    /// Writes every byte, retrying short writes.
    static func writeAll(_ fd: Int32, _ buffer: UnsafeRawBufferPointer) throws {
        guard let base = buffer.baseAddress, buffer.count > 0 else { return }
        let code = mp_write_all(fd, base, buffer.count)
        if code == EPIPE {
            throw MultiprocessingError(.endOfStream, "the reading end was closed", errno: code)
        }
        if code != 0 { throw error("write", code) }
    }

    /// Waits until `fd` is readable or `timeout` (nil: forever) passes. Returns whether it is readable.
    static func waitReadable(_ fds: [Int32], deadline: ContinuousClock.Instant?) throws -> [Bool] {
        var polls = fds.map { pollfd(fd: $0, events: Int16(POLLIN), revents: 0) }
        while true {
            var milliseconds: Int32 = -1
            if let deadline {
                let left = deadline - .now
                milliseconds = left <= .zero ? 0 : Int32(min((left / .milliseconds(1)).rounded(.up), Double(Int32.max)))
            }
            let ready = poll(&polls, nfds_t(polls.count), milliseconds)
            if ready < 0 {
                if errno == EINTR { continue }
                throw error("poll")
            }
            if ready > 0 || milliseconds == 0 || deadline.map({ $0 <= .now }) == true {
                return polls.map { $0.revents != 0 }
            }
        }
    }

    /// A timeout for the C waits: -1 waits forever (`nil`), 0 does not wait.
    static func timeoutNanoseconds(_ timeout: Duration?) -> Int64 {
        guard let timeout else { return -1 }
        if timeout <= .zero { return 0 }
        let (seconds, attoseconds) = timeout.components
        return seconds >= Int64.max / 1_000_000_000 - 1 ? -1 : seconds * 1_000_000_000 + attoseconds / 1_000_000_000
    }

    /// The time `timeout` from now on `clock`, as the pthread timed waits take it.
    static func deadline(after timeout: Duration, on clock: clockid_t) -> timespec {
        var now = timespec()
        clock_gettime(clock, &now)
        let nanoseconds = Int(now.tv_nsec) + Int(max(0, Platform.timeoutNanoseconds(timeout)) % 1_000_000_000)
        let seconds = Int(max(0, Platform.timeoutNanoseconds(timeout)) / 1_000_000_000)
        return timespec(
            tv_sec: now.tv_sec + seconds + nanoseconds / 1_000_000_000, tv_nsec: nanoseconds % 1_000_000_000)
    }

    static func ignoreBrokenPipeSignal() {
        _ = brokenPipeIgnored
    }

    /// Writing to a pipe whose reader is gone must be an error, not a signal
    /// that ends the program: Python makes the same choice.
    private static let brokenPipeIgnored: Void = {
        var current = sigaction()
        sigaction(SIGPIPE, nil, &current)
        #if canImport(Glibc)
            let isDefault = current.__sigaction_handler.sa_handler == nil
        #else
            let isDefault = current.__sigaction_u.__sa_handler == nil
        #endif
        if isDefault { signal(SIGPIPE, SIG_IGN) }
    }()
}

private func systemClose(_ fd: Int32) -> Int32 {
    #if canImport(Glibc)
        Glibc.close(fd)
    #else
        Darwin.close(fd)
    #endif
}

func systemKill(_ pid: pid_t, _ signal: Int32) -> Int32 {
    #if canImport(Glibc)
        Glibc.kill(pid, signal)
    #else
        Darwin.kill(pid, signal)
    #endif
}

extension Platform {
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
