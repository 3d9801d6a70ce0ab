#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import CMultiprocessing

/// Shared memory: names, sizes and mappings.
extension Platform {
    /// Opens (or with O_CREAT creates) a shared memory name, close-on-exec.
    ///
    /// - Parameter what: What it is, for the error.
    /// - Throws: `.systemCall` (ENOENT, EEXIST, EACCES, ...).
    static func openSharedMemory(_ path: String, _ flags: Int32, mode: mode_t = 0, what: String) throws -> Int32 {
        let fd = shm_open(path, flags | O_CLOEXEC, mode)
        if fd < 0 { throw error("shm_open of \(what)") }
        return fd
    }

    /// Removes a shared memory name; `false` (errno set) when that fails, as for a name already gone.
    @discardableResult
    static func unlinkSharedMemory(_ path: String) -> Bool {
        shm_unlink(path) == 0
    }

    /// The size of the file behind `fd`.
    static func size(of fd: Int32) throws -> Int {
        var status = stat()
        try retrying("fstat") { fstat(fd, &status) }
        return Int(status.st_size)
    }

    /// Sets the size of the file behind `fd`.
    static func resize(_ fd: Int32, to size: Int) throws {
        try retrying("ftruncate") { ftruncate(fd, off_t(size)) }
    }

    /// Maps `size` bytes of `fd`, shared and writable; `populate` maps every
    /// page at once (one bulk operation instead of a page fault per 4 KiB).
    static func mapShared(_ fd: Int32, size: Int, populate: Bool) throws -> UnsafeMutableRawPointer {
        let address = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED | (populate ? MAP_POPULATE : 0), fd, 0)
        guard let address, address != MAP_FAILED else { throw error("mmap") }
        return address
    }

    static func unmap(_ base: UnsafeMutableRawPointer, size: Int) {
        let result = munmap(base, size)
        precondition(result == 0, "munmap: \(errorName(errno)): a library bug")
    }
}
