/// The messages between a pool and its workers, written and parsed here only.
///
/// They are built by hand, not with the wire format: they are on the hot path
/// of every chunk, and their shape is fixed. Integers are little-endian.
///
/// Pool to worker, each one frame on the work pipe (see `Frame`):
/// - work: `1`, job id (8), first item (8), end item (8), descriptor count
///   (2), type name length (2), type name, the chunk's payload (the wire
///   encoding of its inputs). The worker runs items `first..<end` of the
///   payload. The length `0xFFFF` and no name: the type of the previous work
///   message. With descriptors, they arrive first on the worker's descriptor
///   socket, one message per job;
/// - stop: `2`; the worker exits after the work sent before it.
///
/// Worker to pool:
/// - ready: `1`, then `0`, or `1` and a wire-encoded `ErrorEnvelope` when the
///   initializer threw; a frame on the results pipe;
/// - result: `2`, job id (8), first item (8), end item (8), kind (1, see
///   ``PoolMessage/ResultKind``), compute time in nanoseconds (8), payload;
///   a record in the worker's ``ResultRing`` (or, when large, a frame on the
///   results pipe with an on-pipe marker in the ring);
/// - retiring: `3`; the worker grew past its memory limit and exits without
///   starting the jobs it still holds; on the pipe;
/// - on the pipe: `4`, a marker in the ring: the next result is on the pipe;
/// - doorbell: `5`, on the pipe: the ring has records for a pool that said it
///   would sleep.
enum PoolMessage {
    /// What a result's payload holds.
    enum ResultKind: UInt8 {
        /// The wire encoding of the items' outputs, an array.
        case values = 0
        /// The wire encoding of an array of `Outcome`, one per item.
        case outcomes = 1
        /// The wire encoding of one `ErrorEnvelope` that every item failed with.
        case failed = 2
    }

    /// A work message's fields.
    struct Work {
        var id: UInt64
        /// `nil`: the same type as the previous work message.
        var typeName: String?
        var range: Range<Int>
        var descriptorCount: Int
    }

    /// A result's fields.
    struct Result {
        var id: UInt64
        var range: Range<Int>
        var kind: ResultKind
        var nanoseconds: UInt64
    }

    /// What the pool sends.
    enum ToWorker {
        case work(Work, payload: ArraySlice<UInt8>)
        case stop
    }

    /// What a worker sends.
    enum ToPool {
        case ready(failure: ArraySlice<UInt8>?)
        case result(Result, payload: ArraySlice<UInt8>)
        case retiring
        case onPipe
        case doorbell
    }

    private static let workTag: UInt8 = 1
    private static let stopTag: UInt8 = 2
    private static let readyTag: UInt8 = 1
    private static let resultTag: UInt8 = 2
    private static let retiringTag: UInt8 = 3
    private static let onPipeTag: UInt8 = 4
    private static let doorbellTag: UInt8 = 5
    private static let sameType: UInt16 = 0xFFFF
    private static let workHeaderSize = 1 + 8 + 8 + 8 + 2 + 2
    private static let resultHeaderSize = 1 + 8 + 8 + 8 + 1 + 8

    // MARK: Pool to worker

    /// Appends a work message's frame header and fields to `buffer`; its
    /// payload of `payloadCount` bytes must follow.
    static func appendWork(_ work: Work, payloadCount: Int, to buffer: inout [UInt8]) {
        let name = work.typeName?.utf8
        appendFrameHeader(length: workHeaderSize + (name?.count ?? 0) + payloadCount, to: &buffer)
        buffer.append(workTag)
        append(work.id, to: &buffer)
        append(UInt64(work.range.lowerBound), to: &buffer)
        append(UInt64(work.range.upperBound), to: &buffer)
        append(UInt16(work.descriptorCount), to: &buffer)
        if let name {
            append(UInt16(name.count), to: &buffer)
            buffer.append(contentsOf: name)
        } else {
            append(sameType, to: &buffer)
        }
    }

    static func appendStop(to buffer: inout [UInt8]) {
        appendFrameHeader(length: 1, to: &buffer)
        buffer.append(stopTag)
    }

    static func parseToWorker(_ frame: [UInt8]) throws -> ToWorker {
        var reader = Reader(frame)
        switch try reader.byte() {
        case workTag:
            let id = try reader.read(UInt64.self)
            let range = try reader.range()
            let descriptors = Int(try reader.read(UInt16.self))
            let nameLength = try reader.read(UInt16.self)
            let typeName = nameLength == sameType ? nil : try reader.string(count: Int(nameLength))
            let work = Work(id: id, typeName: typeName, range: range, descriptorCount: descriptors)
            return .work(work, payload: reader.rest)
        case stopTag:
            return .stop
        case let tag:
            throw MultiprocessingError(.decodingFailed, "a pool work message with tag \(tag)")
        }
    }

    // MARK: Worker to pool

    /// The frame of a ready message.
    static func readyFrame(failure: [UInt8]?) -> [UInt8] {
        var buffer: [UInt8] = []
        appendFrameHeader(length: 2 + (failure?.count ?? 0), to: &buffer)
        buffer += [readyTag, failure == nil ? 0 : 1]
        if let failure { buffer += failure }
        return buffer
    }

    /// Appends a result's fields (no frame header: it goes in the ring) to
    /// `buffer`; its payload must follow.
    static func appendResult(_ result: Result, to buffer: inout [UInt8]) {
        buffer.append(resultTag)
        append(result.id, to: &buffer)
        append(UInt64(result.range.lowerBound), to: &buffer)
        append(UInt64(result.range.upperBound), to: &buffer)
        buffer.append(result.kind.rawValue)
        append(result.nanoseconds, to: &buffer)
    }

    static let retiring: [UInt8] = [retiringTag]
    static let onPipe: [UInt8] = [onPipeTag]
    static let doorbell: [UInt8] = [doorbellTag]

    static func parseToPool(_ message: [UInt8]) throws -> ToPool {
        var reader = Reader(message)
        switch try reader.byte() {
        case readyTag:
            let failed = try reader.byte() != 0
            return .ready(failure: failed ? reader.rest : nil)
        case resultTag:
            let id = try reader.read(UInt64.self)
            let range = try reader.range()
            guard let kind = ResultKind(rawValue: try reader.byte()) else {
                throw MultiprocessingError(.decodingFailed, "a pool result of an unknown kind")
            }
            let nanoseconds = try reader.read(UInt64.self)
            return .result(Result(id: id, range: range, kind: kind, nanoseconds: nanoseconds), payload: reader.rest)
        case retiringTag: return .retiring
        case onPipeTag: return .onPipe
        case doorbellTag: return .doorbell
        case let tag: throw MultiprocessingError(.decodingFailed, "a pool worker message with tag \(tag)")
        }
    }

    // MARK: Bytes

    static func appendFrameHeader(length: Int, to buffer: inout [UInt8]) {
        let start = buffer.count
        buffer += repeatElement(0, count: Frame.headerSize(for: length))
        buffer.withUnsafeMutableBytes { Frame.writeHeader(length: length, to: $0.baseAddress! + start) }
    }

    private static func append<T: FixedWidthInteger>(_ value: T, to buffer: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { buffer += $0 }
    }

    /// Reads a message front to back; every read checks the length.
    private struct Reader {
        let bytes: [UInt8]
        var offset = 0

        init(_ bytes: [UInt8]) { self.bytes = bytes }

        var rest: ArraySlice<UInt8> { bytes[offset...] }

        mutating func byte() throws -> UInt8 { UInt8(try read(UInt8.self)) }

        mutating func read<T: FixedWidthInteger>(_ type: T.Type) throws -> T {
            let size = MemoryLayout<T>.size
            guard bytes.count - offset >= size else { throw truncated }
            defer { offset += size }
            return bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
        }

        mutating func range() throws -> Range<Int> {
            let lower = try read(UInt64.self)
            let upper = try read(UInt64.self)
            guard lower <= upper, upper <= UInt64(Int32.max) else {
                throw MultiprocessingError(.decodingFailed, "a pool message with the item range \(lower)..<\(upper)")
            }
            return Int(lower)..<Int(upper)
        }

        mutating func string(count: Int) throws -> String {
            guard bytes.count - offset >= count else { throw truncated }
            defer { offset += count }
            return String(decoding: bytes[offset..<offset + count], as: UTF8.self)
        }

        private var truncated: MultiprocessingError {
            MultiprocessingError(.decodingFailed, "a pool message is truncated")
        }
    }
}
