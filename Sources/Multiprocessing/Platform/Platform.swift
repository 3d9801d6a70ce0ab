#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import CMultiprocessing

/// The system calls of the library, each wrapped once.
///
/// Each wrapper makes one system call, applies its EINTR policy (retry, except
/// for `close`), and throws ``MultiprocessingError`` with the call's name and
/// errno on failure. EBADF and EFAULT mean the library has a bug and trap
/// (except where the descriptor may be the caller's: ``duplicate(_:of:)``).
///
/// Calls made elsewhere, each on purpose:
/// - the pthread mutexes and conditions, inside the two lock types that own
///   them (`Internals/ForkSafeMutex.swift`, `Internals/ConditionLock.swift`),
///   and `pthread_create` for the library's threads (`Internals/BlockingThreads.swift`);
/// - the socket calls of a ``Listener`` (`socket`, `bind`, `listen`,
///   `setsockopt`, `getsockname`), in `Channels/Listener.swift`;
/// - the I/O loops on the data path, whose EINTR and EAGAIN handling is the
///   loop's own: `FrameReader` (a connection's frames), `Outbox` (a worker's
///   pipe), the engine's `poll`, and the `poll` of a pidfd while joining;
/// - calls that cannot fail: `getpid`, `getppid`, `usleep`, `fflush`, and
///   `opendir`/`readdir` of /proc and /dev/shm, whose failure reads as empty.
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
        #if canImport(Glibc)
            try makeSocketPair(Int32(SOCK_SEQPACKET.rawValue) | Int32(SOCK_CLOEXEC.rawValue))
        #else
            try makeSocketPair(SOCK_STREAM)
        #endif
    }

    /// A connected pair of close-on-exec Unix stream sockets.
    static func makeStreamSocketPair() throws -> [Int32] {
        #if canImport(Glibc)
            try makeSocketPair(Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue))
        #else
            try makeSocketPair(SOCK_STREAM)
        #endif
    }

    private static func makeSocketPair(_ type: Int32) throws -> [Int32] {
        var pair: [Int32] = [-1, -1]
        try retrying("socketpair") { socketpair(AF_UNIX, type, 0, &pair) }
        return pair
    }

    /// The size of a memory page.
    static let pageSize = Int(sysconf(Int32(_SC_PAGESIZE)))

    /// The CPUs online, at least 1.
    static var onlineCPUCount: Int { max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))) }

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

extension Platform {
    /// The first `limit` bytes of a small file (one of /proc's), as text;
    /// `nil` when it cannot be opened or is empty.
    static func readSmallFile(_ path: String, limit: Int = 4096) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes = [UInt8](repeating: 0, count: limit)
        guard let count = try? retrying("read of \(path)", { read(fd, &bytes, bytes.count) }), count > 0 else {
            return nil
        }
        return String(decoding: bytes[..<count], as: UTF8.self)
    }
}

extension Platform {
    /// Reads up to `buffer.count` bytes from the start of the file behind
    /// `fd` (`pread` at offset 0); 0 when it cannot.
    static func readFromStart(_ fd: Int32, into buffer: UnsafeMutableRawBufferPointer) -> Int {
        guard let base = buffer.baseAddress else { return 0 }
        return (try? retrying("pread") { pread(fd, base, buffer.count, 0) }) ?? 0
    }
}

/// Wake-up pipes and standard error.
extension Platform {
    /// Writes one byte to a non-blocking wake-up pipe; a full pipe already holds a wake-up.
    static func poke(_ fd: Int32) {
        var byte: UInt8 = 1
        _ = write(fd, &byte, 1)
    }

    /// Reads everything waiting in a non-blocking wake-up pipe.
    static func drain(_ fd: Int32) {
        var bytes = [UInt8](repeating: 0, count: 256)
        while read(fd, &bytes, bytes.count) > 0 {}
    }

    /// Writes `text` to standard error in one `write`, unbuffered, as a
    /// report that must not interleave with or wait for buffered output.
    static func writeStandardError(_ text: String) {
        var text = text
        _ = text.withUTF8 { write(2, $0.baseAddress, $0.count) }
    }
}
