#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import CMultiprocessing
import Synchronization

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
    /// The segment's name, for a named segment (see ``create(named:size:persistent:)``).
    public let name: String?
    /// Whether this object removes the name when it is released.
    private let ownsName: Atomic<Bool>
    /// Whether this object created its name (and so owned it at first).
    private let createdHere: Bool
    /// For a pooled segment: its attachment count, in the page after the
    /// caller's bytes (see ``SharedMemoryPool``).
    let header: UnsafeMutableRawPointer?
    /// For a pooled segment in the process that created it: where it goes
    /// back once no process maps it.
    private let pool: SharedMemoryPool.Storage?
    /// The bytes mapped: `size`, or for a pooled segment `size` rounded up
    /// to a page and the header's page.
    let mappedSize: Int
    /// Whether a process that receives the segment maps all of it at once
    /// (right for buffers that will be filled; not for a ring that is
    /// touched a little at a time).
    let populatesOnAttach: Bool

    /// Creates a zero-filled segment.
    ///
    /// - Parameter size: Its size in bytes, at least 1.
    /// - Throws: `.invalidArgument` for a size below 1; `.systemCall` when the
    ///   kernel refuses (for example for lack of memory).
    public convenience init(size: Int) throws {
        try self.init(size: size, populatesOnAttach: true)
    }

    init(size: Int, populatesOnAttach: Bool) throws {
        try Self.check(size: size)
        (fd, baseAddress) = try Self.makeAnonymous(mappedSize: size)
        self.size = size
        name = nil
        ownsName = Atomic(false)
        createdHere = false
        header = nil
        pool = nil
        mappedSize = size
        self.populatesOnAttach = populatesOnAttach
    }

    /// Maps a segment received from another process, or opened by name. A
    /// pooled segment (`counted`) was counted for this process by the sender.
    init(
        adopting fd: Int32, size: Int, counted: Bool = false, populate: Bool = true, name: String? = nil,
        ownsName: Bool = false
    ) throws {
        let mappedSize = counted ? Self.pooledMappedSize(size) : size
        let held = try Platform.size(of: fd)
        guard held == mappedSize else {
            throw MultiprocessingError(
                .decodingFailed, "the shared memory descriptor holds \(held) bytes, not the \(mappedSize) expected")
        }
        baseAddress = try Platform.mapShared(fd, size: mappedSize, populate: populate)
        self.fd = fd
        self.size = size
        self.name = name
        self.ownsName = Atomic(ownsName)
        createdHere = ownsName
        self.mappedSize = mappedSize
        populatesOnAttach = populate
        pool = nil
        if counted {
            let header = baseAddress + (mappedSize - Self.pageSize)
            do {
                try Self.register(header)
            } catch {
                mp_segment_detach(header)
                Platform.unmap(baseAddress, size: mappedSize)
                throw error
            }
            self.header = header
        } else {
            header = nil
        }
    }

    /// A segment of `pool`: `reused` (a descriptor and its mapping that no
    /// process maps any more, zeroed here) or a new one.
    init(pooledSize size: Int, pool: SharedMemoryPool.Storage, reused: (fd: Int32, base: UnsafeMutableRawPointer)?)
        throws
    {
        let mappedSize = Self.pooledMappedSize(size)
        let fd: Int32
        let base: UnsafeMutableRawPointer
        if let reused {
            (fd, base) = reused
            base.initializeMemory(as: UInt8.self, repeating: 0, count: size)
        } else {
            (fd, base) = try Self.makeAnonymous(mappedSize: mappedSize)
        }
        let header = base + (mappedSize - Self.pageSize)
        mp_segment_set_attached(header, 1)
        do {
            try Self.register(header)
        } catch {
            Platform.unmap(base, size: mappedSize)
            Platform.close(fd)
            throw error
        }
        self.fd = fd
        baseAddress = base
        self.mappedSize = mappedSize
        self.header = header
        self.size = size
        self.pool = pool
        name = nil
        ownsName = Atomic(false)
        createdHere = false
        populatesOnAttach = true
    }

    /// Lists a pooled segment's header, so that forks count their children in it.
    private static func register(_ header: UnsafeMutableRawPointer) throws {
        guard mp_segment_register(header) == 0 else {
            throw MultiprocessingError(.systemCall, "out of memory registering a pooled shared memory segment")
        }
    }

    /// Throws `.invalidArgument` for a size below 1.
    static func check(size: Int) throws {
        guard size >= 1 else {
            throw MultiprocessingError(.invalidArgument, "a shared memory segment needs at least 1 byte, not \(size)")
        }
    }

    /// A new anonymous, zero-filled segment, mapped without populating it
    /// (its pages would be zeroed twice).
    private static func makeAnonymous(mappedSize: Int) throws -> (fd: Int32, base: UnsafeMutableRawPointer) {
        let fd = try Platform.makeAnonymousFile()
        do {
            try Platform.resize(fd, to: mappedSize)
            return (fd, try Platform.mapShared(fd, size: mappedSize, populate: false))
        } catch {
            Platform.close(fd)
            throw error
        }
    }

    static let pageSize = Platform.pageSize

    static func pooledMappedSize(_ size: Int) -> Int {
        (size + pageSize - 1) / pageSize * pageSize + pageSize
    }

    /// Creates a named segment that other processes can open by its name
    /// (Python's `SharedMemory(name, create=True)`).
    ///
    /// Prefer anonymous segments (``init(size:)``). This object owns the
    /// name and removes it when it is released, or at ``unlink()``; mappings
    /// that processes already hold stay valid. If the creating process dies
    /// without removing it (even by SIGKILL), the next create or open of a
    /// named segment in any process that uses this library removes it, as
    /// Python's resource tracker does, unless it was made `persistent`.
    ///
    /// - Parameters:
    ///   - name: The name: 1 to 238 bytes (249 for a persistent one), without
    ///     `/` or NUL, and not `.` or `..` (it lives in `/dev/shm`).
    ///   - size: The size in bytes, at least 1.
    ///   - persistent: When `true`, the name stays after its creator's death
    ///     until someone unlinks it (a companion name records the creator
    ///     otherwise, `swift-mp-creator.<name>`).
    /// - Throws: `.invalidArgument` for a bad name or size; `.systemCall`
    ///   (EEXIST) when the name is taken.
    ///
    /// The corresponding C function is `shm_open` with `O_CREAT | O_EXCL`.
    public static func create(named name: String, size: Int, persistent: Bool = false) throws -> SharedMemory {
        let path = try checkedPath(name)
        if !persistent && name.utf8.count > SegmentCreators.longestName {
            throw MultiprocessingError(
                .invalidArgument,
                "a shared memory name that is not persistent has at most \(SegmentCreators.longestName) bytes, "
                    + "not \(name.utf8.count) (the record of its creator needs the rest); shorten it or pass persistent: true")
        }
        try check(size: size)
        SegmentCreators.sweep()
        let fd = try Platform.openSharedMemory(path, O_RDWR | O_CREAT | O_EXCL, mode: 0o600, what: "'\(name)'")
        do {
            if !persistent { try SegmentCreators.record(name) }
            try Platform.resize(fd, to: size)
            return try SharedMemory(adopting: fd, size: size, name: name, ownsName: true)
        } catch {
            Platform.unlinkSharedMemory(path)
            if !persistent { SegmentCreators.forget(name) }
            Platform.close(fd)
            throw error
        }
    }

    /// Opens a named segment another process created; this object does not own the name.
    ///
    /// - Throws: `.systemCall` (ENOENT) when no segment has that name.
    public static func open(named name: String) throws -> SharedMemory {
        let path = try checkedPath(name)
        SegmentCreators.sweep()
        let fd = try Platform.openSharedMemory(path, O_RDWR, what: "'\(name)'")
        do {
            return try SharedMemory(adopting: fd, size: try Platform.size(of: fd), name: name)
        } catch {
            Platform.close(fd)
            throw error
        }
    }

    /// Removes the name now (Python's `unlink()`); the memory lives on while mapped.
    ///
    /// Only the creator may.
    ///
    /// - Throws: `.invalidArgument` for an anonymous segment, for one this
    ///   process opened rather than created, and when this segment's name was
    ///   already removed (a second `unlink()`); `.systemCall` (ENOENT) when
    ///   another process removed the name first.
    public func unlink() throws {
        guard let name else { throw MultiprocessingError(.invalidArgument, "an anonymous segment has no name") }
        guard ownsName.exchange(false, ordering: .acquiringAndReleasing) else {
            throw MultiprocessingError(
                .invalidArgument,
                createdHere
                    ? "the name '\(name)' was already removed by an earlier unlink() of this segment"
                    : "the segment '\(name)' was opened, not created, here: only its creator removes the name")
        }
        SegmentCreators.forget(name)
        guard Platform.unlinkSharedMemory(try Self.checkedPath(name)) else {
            throw Platform.error("shm_unlink of '\(name)'")
        }
    }

    private static func checkedPath(_ name: String) throws -> String {
        guard !name.isEmpty, name.utf8.count < 250, !name.contains("/"), !name.utf8.contains(0), name != ".",
            name != ".."
        else {
            throw MultiprocessingError(
                .invalidArgument,
                "a shared memory name must be 1 to 249 bytes without '/' or NUL, and not '.' or '..', "
                    + "not '\(name.replacingNUL)' (\(name.utf8.count) bytes)")
        }
        return "/" + name
    }

    deinit {
        if let header {
            mp_segment_unregister(header)
            // No process maps it any more: its pool may hand it out again.
            if mp_segment_detach(header) == 0, let pool, pool.keep(fd: fd, base: baseAddress, mappedSize: mappedSize) {
                return
            }
        }
        Platform.unmap(baseAddress, size: mappedSize)
        Platform.close(fd)
        if let name, ownsName.load(ordering: .acquiring) {
            Platform.unlinkSharedMemory("/" + name)
            SegmentCreators.forget(name)
        }
    }

    /// The whole segment, as raw bytes.
    public var bytes: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: baseAddress, count: size)
    }

    /// A copy of the segment's bytes (Python's `bytes(shm.buf)`).
    ///
    /// A large copy asks the kernel for transparent huge pages for the new
    /// array before writing it, so that filling it costs one page fault per
    /// 2 MiB instead of one per 4 KiB, where the system allows it.
    public func copyBytes() -> [UInt8] {
        [UInt8](unsafeUninitializedCapacity: size) { buffer, count in
            #if canImport(Glibc)
                let huge = 2 << 20
                if size >= 4 * huge, let start = buffer.baseAddress {
                    let first = (UInt(bitPattern: start) + UInt(huge - 1)) & ~UInt(huge - 1)
                    let last = (UInt(bitPattern: start) + UInt(size)) & ~UInt(huge - 1)
                    if last > first {
                        _ = madvise(UnsafeMutableRawPointer(bitPattern: first), Int(last - first), MADV_HUGEPAGE)
                    }
                }
            #endif
            UnsafeMutableRawBufferPointer(buffer).copyMemory(from: UnsafeRawBufferPointer(bytes))
            count = size
        }
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
        try container.encode(header != nil)
        try container.encode(populatesOnAttach)
        // Counted now for the receiver, which takes the count over: the
        // segment cannot go back to its pool while the descriptor travels.
        // A value that never arrives leaves the count up, and the segment is
        // freed instead of reused.
        if let header { mp_segment_attach(header) }
    }

    public convenience init(from decoder: any Decoder) throws {
        guard let transfer = decoder.userInfo[.descriptorTransfer] as? DescriptorTransfer else {
            throw MultiprocessingError(
                .decodingFailed, "SharedMemory can be decoded only from the task value of a child process")
        }
        var container = try decoder.unkeyedContainer()
        let fd = try transfer.take(container.decode(Int.self))
        let size = try container.decode(Int.self)
        let counted = try container.decode(Bool.self)
        let populate = try container.decode(Bool.self)
        guard fd >= 0, size >= 1 else {
            throw MultiprocessingError(.decodingFailed, "a shared memory segment arrived without its descriptor")
        }
        try self.init(adopting: fd, size: size, counted: counted, populate: populate)
    }
}

extension String {
    /// The string with each NUL shown as `\0`, for messages.
    fileprivate var replacingNUL: String { split(separator: "\0", omittingEmptySubsequences: false).joined(separator: "\\0") }
}
