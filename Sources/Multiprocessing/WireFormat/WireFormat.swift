// Pieces shared by `WireEncoder` and `WireDecoder`.
//
// The format is schema-less: the decoder knows the type it decodes, so values
// carry no type tags. Layout of one message:
//
//     message     = body keyTable tableLength
//     body        = the plain encoding of the top-level value
//     keyTable    = varint(count) (varint(byteCount) utf8)*, absent when no key is used
//     tableLength = byte length of keyTable as a varint written backwards, so it
//                   is read from the end: highest 7 bits first, every byte but
//                   the first with its high bit set (a single 0x00 when empty)
//
// Plain encodings (varints are LEB128, signed ones zigzag first):
//
//     Bool, Int8, UInt8        1 byte
//     Int16...Int64, Int       zigzag varint
//     UInt16...UInt64, UInt    varint
//     Int128, UInt128          16 bytes little-endian
//     Float, Double            IEEE bit pattern, 4 or 8 bytes little-endian
//     String                   varint(UTF-8 byte count) UTF-8
//     Optional                 0x00 for nil, or 0x01 and the wrapped value
//     Array, Set               varint(count) elements; arrays of Bool and of
//                              fixed-width numbers are their raw little-endian
//                              bytes, Int and UInt taking 8 bytes each
//     Dictionary               varint(count) (key value)*
//     any other type           what its `encode(to:)` writes into its container:
//       keyed container        varint(entryCount << 2 | 2) entry*
//                              entry = varint(key table index) varint(length) value
//                              length 0 is nil (`encodeNil`, or `encode` of a nil
//                              optional); `encodeIfPresent` of nil writes no entry
//       unkeyed container      varint(elementCount << 2 | 3) element*
//                              element = 0x00 (nil) | 0x01 value
//                                      | 0x01 varint(length) nested container or super encoder
//       single value           0x00 (nil) | 0x01 value
//       nothing requested      as an empty keyed container
//
// Inside a keyed entry or an element the outermost Optional has no presence
// byte of its own: the empty entry or the element tag already says nil.

/// Limits and markers of the wire format.
enum WireFormat {
    /// How deeply values and containers may nest, bounding the decoder's recursion.
    static let maxDepth = 512

    /// Low two bits of a container header.
    static let keyedHeader: UInt64 = 2
    static let unkeyedHeader: UInt64 = 3
    static let nilMarker: UInt8 = 0
    static let valueMarker: UInt8 = 1

    /// Reservations made from a length prefix are capped at this many bytes;
    /// beyond it arrays grow as elements actually decode, so a lying count
    /// cannot make the decoder allocate much more than the input holds.
    static let reservationBudget = 1 << 22

    @inline(__always)
    static func zigzag(_ value: Int64) -> UInt64 {
        UInt64(bitPattern: (value << 1) ^ (value >> 63))
    }

    @inline(__always)
    static func unzigzag(_ value: UInt64) -> Int64 {
        Int64(bitPattern: value >> 1) ^ -Int64(bitPattern: value & 1)
    }

    /// Appends `value` as a LEB128 varint.
    @inline(__always)
    static func appendVarint(_ value: UInt64, to buffer: inout [UInt8]) {
        var value = value
        while value >= 0x80 {
            buffer.append(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        buffer.append(UInt8(truncatingIfNeeded: value))
    }

    @inline(__always)
    static func varintSize(_ value: UInt64) -> Int {
        // One byte per started group of 7 significant bits, at least one.
        let bits = 64 - (value | 1).leadingZeroBitCount
        return (bits + 6) / 7
    }

    /// Describes a header's container kind for error messages.
    static func describeHeader(_ header: UInt64) -> String {
        switch header & 3 {
        case 0 where header == 0: return "a nil single value"
        case 1 where header == 1: return "a single value"
        case 2: return "a keyed container"
        case 3: return "an unkeyed container"
        default: return "an invalid container header \(header)"
        }
    }
}

/// A frame of the encoder's or the decoder's stack: a value or container
/// being coded, and where it sits in the coding path.
protocol WirePathFrame {
    var parent: Int { get }
    var key: WirePathComponent { get }
}

/// The encoder's and the decoder's state: a stack of frames, from which
/// coding paths and the errors that name them are built.
protocol WireFrameStack: AnyObject {
    associatedtype Frame: WirePathFrame
    var frames: [Frame] { get }
    /// `.encodingFailed` or `.decodingFailed`.
    static var failureCode: MultiprocessingError.Code { get }
}

extension WireFrameStack {
    /// The keys from the top level down to `frame`.
    func codingPath(_ frame: Int) -> [any CodingKey] {
        var path: [any CodingKey] = []
        var index = frame
        while index >= 0 && index < frames.count {
            if let key = frames[index].key.codingKey {
                path.append(key)
            }
            index = frames[index].parent
        }
        path.reverse()
        return path
    }

    /// An error whose message starts with the coding path of `frame` (and `key` in it).
    func failure(_ message: String, frame: Int, key: WirePathComponent = .none) -> MultiprocessingError {
        var path = codingPath(frame)
        if let key = key.codingKey {
            path.append(key)
        }
        return .wireCodingFailure(Self.failureCode, message, at: path)
    }
}

/// One step of a coding path, kept cheap to create on the hot path.
enum WirePathComponent {
    case none
    case key(any CodingKey)
    case index(Int)

    var codingKey: (any CodingKey)? {
        switch self {
        case .none: return nil
        case .key(let key): return key
        case .index(let index): return WireIndexKey(intValue: index)
        }
    }

    /// Renders a coding path the way error messages show it: `items[3].name`.
    static func describe(_ path: [any CodingKey]) -> String {
        if path.isEmpty {
            return "top level"
        }
        var text = ""
        for key in path {
            if let index = key as? WireIndexKey {
                text += "[\(index.index)]"
            } else {
                if !text.isEmpty {
                    text += "."
                }
                text += key.stringValue
            }
        }
        return text
    }
}

/// The coding key of an element of an unkeyed container or collection.
struct WireIndexKey: CodingKey {
    let index: Int

    var stringValue: String { "Index \(index)" }
    var intValue: Int? { index }

    init(intValue: Int) {
        index = intValue
    }

    init?(stringValue: String) {
        return nil
    }
}

/// The key `superEncoder()` and `superDecoder()` use, as in the standard encoders.
struct WireSuperKey: CodingKey {
    var stringValue: String { "super" }
    var intValue: Int? { nil }

    init() {}

    init?(stringValue: String) {
        guard stringValue == "super" else {
            return nil
        }
    }

    init?(intValue: Int) {
        return nil
    }
}

/// A failure found while reading bytes, before the coding path is known.
struct WireFault: Error {
    let message: String

    init(_ message: String) {
        self.message = message
    }
}

extension MultiprocessingError {
    /// Builds an encoding or decoding error whose message starts with the coding path.
    static func wireCodingFailure(_ code: Code, _ message: String, at path: [any CodingKey]) -> MultiprocessingError {
        MultiprocessingError(code, "at \(WirePathComponent.describe(path)): \(message)")
    }

    /// Converts the standard `EncodingError` and `DecodingError` into the library's error,
    /// leaving library errors and errors of other types as they are.
    static func wireWrappingCodingError(_ error: any Error, _ code: Code) -> any Error {
        if let error = error as? EncodingError {
            switch error {
            case .invalidValue(let value, let context):
                let message = "invalid value \(value): \(context.debugDescription)"
                return wireCodingFailure(code, message, at: context.codingPath)
            @unknown default:
                return MultiprocessingError(code, "\(error)")
            }
        }
        if let error = error as? DecodingError {
            switch error {
            case .typeMismatch(let type, let context):
                let message = "type mismatch for \(type): \(context.debugDescription)"
                return wireCodingFailure(code, message, at: context.codingPath)
            case .valueNotFound(let type, let context):
                let message = "no value for \(type): \(context.debugDescription)"
                return wireCodingFailure(code, message, at: context.codingPath)
            case .keyNotFound(let key, let context):
                let message = "key '\(key.stringValue)' not found: \(context.debugDescription)"
                return wireCodingFailure(code, message, at: context.codingPath)
            case .dataCorrupted(let context):
                return wireCodingFailure(code, context.debugDescription, at: context.codingPath)
            @unknown default:
                return MultiprocessingError(code, "\(error)")
            }
        }
        return error
    }
}
