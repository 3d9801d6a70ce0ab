#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import CMultiprocessing

/// Memory shared between processes: anonymous, and freed by the kernel when
/// the last process that maps it lets go (Python's `shared_memory`, without
/// its leaks).
///
/// A segment has no name in `/dev/shm`: nothing can leak when a process
/// crashes, and no tracker process is needed. Hand it to a child inside its
/// task value (its descriptor travels with the task), or let a forked child
/// inherit it.
///
/// ```swift
/// let memory = try SharedMemory(size: 1 << 20)
/// memory.bytes.storeBytes(of: 42, as: Int.self)
/// try await ChildProcess.run(ReadIt(memory: memory))   // sees 42
/// ```
///
/// The corresponding C functions are `memfd_create`, `ftruncate` and `mmap`.
public final class SharedMemory: @unchecked Sendable {
    // @unchecked: the descriptor and the mapping are set once and released in
    // deinit; the bytes themselves are shared by design, and their users
    // coordinate (a ProcessLock, or their own protocol).

    /// The size in bytes.
    public let size: Int
    let fd: Int32
    /// The first byte of this process's mapping.
    public let baseAddress: UnsafeMutableRawPointer

    /// Creates a zero-filled segment.
    ///
    /// - Parameter size: Its size in bytes, at least 1.
    /// - Throws: `.invalidArgument` for a size below 1; `.systemCall` when the
    ///   kernel refuses (for example for lack of memory).
    public init(size: Int) throws {
        guard size >= 1 else {
            throw MultiprocessingError(.invalidArgument, "a shared memory segment needs at least 1 byte, not \(size)")
        }
        let fd = mp_memfd_create("swift-multiprocessing", 1)
        guard fd >= 0 else { throw Platform.error("memfd_create") }
        do {
            try Platform.retrying("ftruncate") { ftruncate(fd, off_t(size)) }
            baseAddress = try Self.map(fd: fd, size: size)
        } catch {
            Platform.close(fd)
            throw error
        }
        self.fd = fd
        self.size = size
    }

    /// Maps a segment received from another process.
    init(adopting fd: Int32, size: Int) throws {
        var status = stat()
        try Platform.retrying("fstat") { fstat(fd, &status) }
        guard Int(status.st_size) == size else {
            throw MultiprocessingError(
                .decodingFailed, "the shared memory descriptor holds \(status.st_size) bytes, not the \(size) expected")
        }
        baseAddress = try Self.map(fd: fd, size: size)
        self.fd = fd
        self.size = size
    }

    private static func map(fd: Int32, size: Int) throws -> UnsafeMutableRawPointer {
        // Populated at once: one bulk operation instead of a page fault per 4 KiB on first touch.
        let address = mmap(nil, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0)
        guard let address, address != MAP_FAILED else { throw Platform.error("mmap") }
        return address
    }

    deinit {
        munmap(baseAddress, size)
        Platform.close(fd)
    }

    /// The whole segment, as raw bytes.
    public var bytes: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: baseAddress, count: size)
    }
}

extension SharedMemory: Codable {
    /// Encodes the segment for a child: its descriptor travels beside the task value.
    public func encode(to encoder: any Encoder) throws {
        guard let transfer = encoder.userInfo[.descriptorTransfer] as? DescriptorTransfer else {
            throw MultiprocessingError(
                .encodingFailed, "SharedMemory can travel only inside the task value of a child process")
        }
        var container = encoder.unkeyedContainer()
        try container.encode(transfer.add(fd))
        try container.encode(size)
    }

    public convenience init(from decoder: any Decoder) throws {
        guard let transfer = decoder.userInfo[.descriptorTransfer] as? DescriptorTransfer else {
            throw MultiprocessingError(
                .decodingFailed, "SharedMemory can be decoded only from the task value of a child process")
        }
        var container = try decoder.unkeyedContainer()
        let fd = try transfer.take(container.decode(Int.self))
        let size = try container.decode(Int.self)
        guard fd >= 0, size >= 1 else {
            throw MultiprocessingError(.decodingFailed, "a shared memory segment arrived without its descriptor")
        }
        try self.init(adopting: fd, size: size)
    }
}
