/// The messages between a pool and its workers.
///
/// They are built by hand, not with the wire format: they are on the hot path
/// of every chunk, and their shape is fixed. Each is one frame (see `Frame`).
///
/// Parent to worker:
/// - work: `1`, chunk id (8 bytes), type name length (2 bytes), type name,
///   then the chunk's payload (the wire encoding of its inputs); the length
///   `0xFFFF` and no name: the same type as the previous work message;
/// - stop: `2`; the worker exits after the work sent before it.
///
/// Worker to parent:
/// - ready: `1`, then `0`, or `1` and a wire-encoded `ErrorEnvelope` when the
///   initializer threw;
/// - result: `2`, chunk id (8 bytes), kind (1 byte: `0` all values, `1` one
///   outcome per item), compute time in nanoseconds (8 bytes), payload;
/// - retiring: `3`; the worker grew past its memory limit and exits without
///   starting the chunks it still has;
/// - on the pipe: `4`, a marker in the result ring: the next result is on the
///   results pipe;
/// - doorbell: `5`, on the pipe: the result ring has records for a pool that
///   said it would sleep.
///
/// Results travel in the worker's ``ResultRing``, other messages on the
/// results pipe.
enum PoolMessage {
    static let work: UInt8 = 1
    static let stop: UInt8 = 2
    static let ready: UInt8 = 1
    static let result: UInt8 = 2
    static let retiring: UInt8 = 3
    static let onPipe: UInt8 = 4
    static let doorbell: UInt8 = 5

    static let resultHeaderSize = 18

    /// The type name length that stands for "the same type as the previous work message".
    static let sameType: UInt16 = 0xFFFF

    /// Appends a work message; a `nil` type name means the previous message's.
    static func appendWork(id: UInt64, typeName: String?, payload: [UInt8], to outbox: inout Outbox) {
        outbox.appendSmall { buffer in
            let nameLength = typeName?.utf8.count ?? 0
            appendFrameHeader(length: 1 + 8 + 2 + nameLength + payload.count, to: &buffer)
            buffer.append(work)
            append(id, to: &buffer)
            if let typeName {
                append(UInt16(nameLength), to: &buffer)
                buffer.append(contentsOf: typeName.utf8)
            } else {
                append(sameType, to: &buffer)
            }
        }
        outbox.append(payload: payload)
    }

    static func appendStop(to outbox: inout Outbox) {
        outbox.appendSmall { buffer in
            appendFrameHeader(length: 1, to: &buffer)
            buffer.append(stop)
        }
    }

    /// Appends a result message, without a frame header: it goes in the result ring.
    static func appendResult(id: UInt64, kind: UInt8, nanoseconds: UInt64, payload: [UInt8], to buffer: inout [UInt8]) {
        buffer.append(result)
        append(id, to: &buffer)
        buffer.append(kind)
        append(nanoseconds, to: &buffer)
        buffer += payload
    }

    static func appendFrameHeader(length: Int, to buffer: inout [UInt8]) {
        let start = buffer.count
        buffer += repeatElement(0, count: Frame.headerSize(for: length))
        buffer.withUnsafeMutableBytes { Frame.writeHeader(length: length, to: $0.baseAddress! + start) }
    }

    static func append<T: FixedWidthInteger>(_ value: T, to buffer: inout [UInt8]) {
        withUnsafeBytes(of: value.littleEndian) { buffer += $0 }
    }

    static func read<T: FixedWidthInteger>(_ type: T.Type, from bytes: [UInt8], at offset: Int) throws -> T {
        guard offset >= 0, bytes.count - offset >= MemoryLayout<T>.size else {
            throw MultiprocessingError(.decodingFailed, "a pool message is truncated")
        }
        return bytes.withUnsafeBytes { T(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: T.self)) }
    }
}
