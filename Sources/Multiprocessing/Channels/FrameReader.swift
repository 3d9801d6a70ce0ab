#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import CMultiprocessing

/// Message framing on a byte stream: a 4-byte little-endian length, or
/// `0xFFFF_FFFF` followed by an 8-byte length for messages of 4 GiB - 2 and
/// more, then the payload. On a socket, `0xFFFF_FFFE` followed by a 4-byte
/// count announces that many descriptors (sent with SCM_RIGHTS beside the
/// announcement) belonging to the next frame.
enum Frame {
    static let longMarker: UInt32 = 0xFFFF_FFFF
    static let descriptorMarker: UInt32 = 0xFFFF_FFFE
    /// The shortest length written with the long header (the short form
    /// keeps the two marker values for itself).
    static let longLength = Int(descriptorMarker)
    /// Messages up to this size are copied behind their header and written in
    /// one system call; larger ones are written in two.
    static let coalesceLimit = 64 * 1024
    /// A frame larger than this is received in steps, so that a corrupt or
    /// lying length makes the reader allocate only what actually arrives.
    static let trustedAllocation = 64 * 1024 * 1024

    static func headerSize(for length: Int) -> Int { length >= longLength ? 12 : 4 }

    static func writeHeader(length: Int, to pointer: UnsafeMutableRawPointer) {
        if length >= longLength {
            pointer.storeBytes(of: longMarker.littleEndian, as: UInt32.self)
            (pointer + 4).storeBytes(of: UInt64(length).littleEndian, toByteOffset: 0, as: UInt64.self)
        } else {
            pointer.storeBytes(of: UInt32(length).littleEndian, as: UInt32.self)
        }
    }

    /// Writes one frame holding `payload`.
    static func write(_ payload: UnsafeRawBufferPointer, to fd: Int32) throws {
        let header = headerSize(for: payload.count)
        if payload.count <= coalesceLimit {
            try withUnsafeTemporaryAllocation(byteCount: header + payload.count, alignment: 8) { buffer in
                writeHeader(length: payload.count, to: buffer.baseAddress!)
                if payload.count > 0 {
                    (buffer.baseAddress! + header).copyMemory(from: payload.baseAddress!, byteCount: payload.count)
                }
                try Platform.writeAll(fd, UnsafeRawBufferPointer(buffer))
            }
        } else {
            try withUnsafeTemporaryAllocation(byteCount: header, alignment: 8) { buffer in
                writeHeader(length: payload.count, to: buffer.baseAddress!)
                try Platform.writeAll(fd, UnsafeRawBufferPointer(buffer))
            }
            try Platform.writeAll(fd, payload)
        }
    }

    /// Writes a frame whose payload already sits in `buffer` behind 4 reserved
    /// header bytes (encoders append to such a buffer to save a copy).
    static func write(reservedHeader buffer: inout [UInt8], to fd: Int32) throws {
        let length = buffer.count - 4
        if length >= longLength {
            try buffer.withUnsafeBytes { try write(UnsafeRawBufferPointer(rebasing: $0[4...]), to: fd) }
            return
        }
        buffer.withUnsafeMutableBytes { writeHeader(length: length, to: $0.baseAddress!) }
        try buffer.withUnsafeBytes { try Platform.writeAll(fd, $0) }
    }
}

/// Reads frames from a descriptor through a buffer, so that many small
/// messages cost one `read`.
struct FrameReader: ~Copyable {
    private var storage: UnsafeMutableRawBufferPointer
    private var start = 0
    private var end = 0
    let fd: Int32
    /// A frame refused for its size: the stream stands in its middle, so no
    /// later frame can be found.
    private(set) var refusedFrame: (length: Int, limit: Int)?
    /// Whether `fd` is a socket, read with `recvmsg` so that descriptors
    /// sent beside the bytes are kept.
    let carriesDescriptors: Bool
    /// Descriptors that arrived and were not yet handed out, in order.
    private var arrivedDescriptors: [Int32] = []

    init(fd: Int32, capacity: Int = 64 * 1024, carriesDescriptors: Bool = false) {
        self.fd = fd
        self.carriesDescriptors = carriesDescriptors
        storage = .allocate(byteCount: capacity, alignment: 16)
    }

    deinit {
        storage.deallocate()
        for fd in arrivedDescriptors { Platform.close(fd) }
    }

    /// Reads what is there, up to `count` bytes; descriptors that come with
    /// the bytes are queued. -1 with errno on failure.
    private mutating func readSome(_ destination: UnsafeMutableRawPointer, _ count: Int) -> Int {
        guard carriesDescriptors else { return read(fd, destination, count) }
        var fds = [Int32](repeating: -1, count: 32)
        var received: Int32 = 0
        let n = fds.withUnsafeMutableBufferPointer {
            mp_recv_with_fds(fd, destination, count, $0.baseAddress, Int32($0.count), &received)
        }
        if received > 0 { arrivedDescriptors += fds.prefix(Int(received)) }
        // A TCP peer that closed with bytes unread resets the connection: it is gone all the same.
        if n < 0 && errno == ECONNRESET { return 0 }
        return n
    }

    /// Reads the next message with the descriptors announced for it.
    mutating func readMessage(limit: Int) throws -> (bytes: [UInt8], descriptors: [Int32]) {
        try checkReadable()
        var descriptors: [Int32] = []
        do {
            while case .descriptors(let count) = try peekStart() {
                start += 8
                guard arrivedDescriptors.count >= count else {
                    throw MultiprocessingError(
                        .decodingFailed,
                        "a message announced \(count) descriptors but \(arrivedDescriptors.count) arrived with it")
                }
                descriptors += arrivedDescriptors.prefix(count)
                arrivedDescriptors.removeFirst(count)
            }
            return (try readFrame(limit: limit), descriptors)
        } catch {
            for fd in descriptors { Platform.close(fd) }
            throw error
        }
    }

    private enum Start {
        case data
        case descriptors(Int)
    }

    private mutating func peekStart() throws -> Start {
        try fill(4, atFrameStart: true)
        guard storage.loadUnaligned(fromByteOffset: start, as: UInt32.self).littleEndian == Frame.descriptorMarker
        else { return .data }
        try fill(8, atFrameStart: false)
        return .descriptors(Int(storage.loadUnaligned(fromByteOffset: start + 4, as: UInt32.self).littleEndian))
    }

    var hasBufferedBytes: Bool { end > start }

    /// Reads the next frame's payload. Throws `.endOfStream` when the writer
    /// closed its end between frames, and also, with a message that says so,
    /// when it closed in the middle of one.
    mutating func readFrame(limit: Int) throws -> [UInt8] {
        try checkReadable()
        let length = try readLength()
        try checkLength(length, limit: limit)
        if length <= Frame.trustedAllocation {
            return try [UInt8](unsafeUninitializedCapacity: length) { buffer, count in
                try readPayload(into: UnsafeMutableRawBufferPointer(buffer))
                count = length
            }
        }
        // Only once the first part has really arrived is the claimed size allocated.
        let first = try [UInt8](unsafeUninitializedCapacity: Frame.trustedAllocation) { buffer, count in
            try readPayload(into: UnsafeMutableRawBufferPointer(buffer))
            count = buffer.count
        }
        return try [UInt8](unsafeUninitializedCapacity: length) { buffer, count in
            let raw = UnsafeMutableRawBufferPointer(buffer)
            first.withUnsafeBytes { raw.copyMemory(from: $0) }
            try readPayload(into: UnsafeMutableRawBufferPointer(rebasing: raw[first.count...]))
            count = length
        }
    }

    /// Reads a frame header and returns the payload's length.
    mutating func readLength() throws -> Int {
        let (length, header) = try peekLength()
        start += header
        return length
    }

    /// Reads the next frame into `destination` if it fits. If it does not, the
    /// frame stays unread and the error says how large it is.
    mutating func readFrame(into destination: UnsafeMutableRawBufferPointer, limit: Int = .max) throws -> Int {
        try checkReadable()
        let (length, header) = try peekLength()
        if length > limit {
            start += header
            try checkLength(length, limit: limit)
        }
        guard length <= destination.count else {
            throw MultiprocessingError(
                .invalidArgument,
                "the next message has \(length) bytes, the buffer only \(destination.count); it was left unread")
        }
        start += header
        try readPayload(into: UnsafeMutableRawBufferPointer(rebasing: destination[..<length]))
        return length
    }

    /// Refuses a frame above `limit` (its header already read), and every frame after it.
    private mutating func checkLength(_ length: Int, limit: Int) throws {
        guard length > limit else { return }
        refusedFrame = (length, limit)
        throw MultiprocessingError(
            .messageTooLarge,
            "a message of \(length) bytes arrived, more than this connection's maximumMessageSize of \(limit); "
                + "nothing was allocated for it, and since the stream stands in the middle of that message the "
                + "connection can no longer receive (its state is .unreadable): close it, or raise the limit on both "
                + "ends before such messages are sent")
    }

    private func checkReadable() throws {
        guard let (length, limit) = refusedFrame else { return }
        throw MultiprocessingError(
            .messageTooLarge,
            "this connection can no longer receive: an earlier message of \(length) bytes was refused for being "
                + "more than its maximumMessageSize of \(limit), and the rest of it is still in the stream; close it")
    }

    private mutating func peekLength() throws -> (length: Int, headerSize: Int) {
        try fill(4, atFrameStart: true)
        let short = storage.loadUnaligned(fromByteOffset: start, as: UInt32.self).littleEndian
        if short == Frame.descriptorMarker {
            try fill(8, atFrameStart: false)
            let count = storage.loadUnaligned(fromByteOffset: start + 4, as: UInt32.self).littleEndian
            throw MultiprocessingError(
                .invalidArgument,
                "the next message carries \(count) file descriptor(s): receive it with receiveDescriptor() or "
                    + "receive(_:); it was left unread")
        }
        guard short == Frame.longMarker else { return (Int(short), 4) }
        try fill(12, atFrameStart: false)
        let long = storage.loadUnaligned(fromByteOffset: start + 4, as: UInt64.self).littleEndian
        // A claim beyond Int.max is refused like any claim above the limit.
        return (long <= UInt64(Int.max) ? Int(long) : Int.max, 12)
    }

    /// Copies `count` payload bytes into `destination`, from the buffer first and then straight from the descriptor.
    mutating func readPayload(into destination: UnsafeMutableRawBufferPointer) throws {
        var filled = min(end - start, destination.count)
        if filled > 0 {
            destination.baseAddress!.copyMemory(from: storage.baseAddress! + start, byteCount: filled)
            start += filled
        }
        let remaining = destination.count - filled
        if remaining == 0 { return }
        if remaining < storage.count / 2 {
            try fill(remaining, atFrameStart: false)
            (destination.baseAddress! + filled).copyMemory(from: storage.baseAddress! + start, byteCount: remaining)
            start += remaining
            return
        }
        while filled < destination.count {
            let n = readSome(destination.baseAddress! + filled, destination.count - filled)
            if n > 0 {
                filled += n
            } else if n == 0 {
                throw truncated()
            } else if errno != EINTR {
                throw Platform.error("read")
            }
        }
    }

    /// Ensures `count` bytes are buffered.
    private mutating func fill(_ count: Int, atFrameStart: Bool) throws {
        if end - start >= count { return }
        if start > 0 {
            let buffered = end - start
            if buffered > 0 {
                storage.baseAddress!.copyMemory(from: storage.baseAddress! + start, byteCount: buffered)
            }
            start = 0
            end = buffered
        }
        while end - start < count {
            let n = readSome(storage.baseAddress! + end, storage.count - end)
            if n > 0 {
                end += n
            } else if n == 0 {
                if atFrameStart && end == start {
                    throw MultiprocessingError(.endOfStream, "the other end of the connection was closed")
                }
                throw truncated()
            } else if errno != EINTR {
                throw Platform.error("read")
            }
        }
    }

    private func truncated() -> MultiprocessingError {
        MultiprocessingError(.endOfStream, "the other end of the connection was closed in the middle of a message")
    }
}
