#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import CMultiprocessing

/// Descriptor flags and copies (`fcntl`).
extension Platform {
    /// Turns O_NONBLOCK on or off, keeping the descriptor's other status flags.
    static func setNonBlocking(_ fd: Int32, _ on: Bool = true) {
        let flags = fcntl(fd, F_GETFL)
        precondition(flags >= 0, "fcntl(F_GETFL) of descriptor \(fd): \(errorName(errno)): a library bug")
        _ = fcntl(fd, F_SETFL, on ? flags | O_NONBLOCK : flags & ~O_NONBLOCK)
    }

    /// Marks a descriptor close-on-exec, so no program this process executes inherits it.
    static func setCloseOnExec(_ fd: Int32) {
        _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
    }

    /// A close-on-exec copy of `fd`.
    ///
    /// - Parameter what: What the descriptor is, for the error.
    /// - Throws: `.systemCall` (EBADF for a descriptor that is not open: it
    ///   may be the caller's, so this does not trap).
    static func duplicate(_ fd: Int32, of what: String) throws -> Int32 {
        let copy = fcntl(fd, F_DUPFD_CLOEXEC, 0)
        if copy < 0 { throw error("dup of \(what)") }
        return copy
    }

    /// Whether `fd` is a Unix socket (an open descriptor that is a socket of AF_UNIX).
    static func isUnixSocket(_ fd: Int32) -> Bool {
        var info = stat()
        guard fd >= 0, fstat(fd, &info) == 0, (info.st_mode & S_IFMT) == S_IFSOCK else { return false }
        var address = sockaddr_storage()
        var size = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &size) }
        }
        return result == 0 && Int32(address.ss_family) == AF_UNIX
    }

    /// Whether `fd` is an open descriptor of this process.
    static func isOpen(_ fd: Int32) -> Bool {
        fd >= 0 && fcntl(fd, F_GETFD) >= 0
    }
}
