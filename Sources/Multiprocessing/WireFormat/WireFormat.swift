// Pieces shared by `WireEncoder` and `WireDecoder`.
//
// The format is schema-less: the decoder knows the type it decodes, so values
// carry no type tags. Layout of one message:
//
//     message   = body keyTable tableLength
//     body      = the plain encoding of the top-level value
//     keyTable  = varint(count) (varint(byteCount) utf8)*   -- absent when no keys are used
//     tableLength = byte length of keyTable as a varint written backwards,
//                   so it can be read from the end (a single 0x00 when empty)
//
// Plain encodings:
//
//     Bool, Int8, UInt8     1 byte
//     Int16...Int64, Int    zigzag LEB128 varint
//     UInt16...UInt64, UInt LEB128 varint
//     Int128, UInt128       16 bytes little-endian
//     Float, Double         IEEE bit pattern, 4 or 8 bytes little-endian
//     String                varint(utf8 byte count) utf8
//     Optional              0x00 (nil) or 0x01 value
//     Array, Set            varint(count) elements; arrays of fixed-width numbers
//                           and Bool are the raw little-endian element bytes
//     Dictionary            varint(count) (key value)*
//     other types           what their `encode(to:)` writes into one container:
//       keyed container     varint(count << 2 | 2) entry*
//                           entry = varint(key index) varint(length) value,
//                           length 0 meaning nil
//       unkeyed container   varint(count << 2 | 3) element*
//                           element = 0x00 (nil) | 0x01 value | 0x01 varint(length) container
//                           (the last form for nested containers and super encoders)
//       single value        0x00 (nil) or 0x01 value

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

    /// Whether arrays of this element type are written as raw little-endian element bytes.
    static func isTrivialElement<E>(_ type: E.Type) -> Bool {
        E.self == UInt8.self || E.self == Int8.self || E.self == Bool.self || E.self == Double.self
            || E.self == Float.self || E.self == Int64.self || E.self == UInt64.self || E.self == Int32.self
            || E.self == UInt32.self || E.self == Int16.self || E.self == UInt16.self
            || ((E.self == Int.self || E.self == UInt.self) && MemoryLayout<Int>.size == 8)
    }

    @inline(__always)
    static func zigzag(_ value: Int64) -> UInt64 {
        UInt64(bitPattern: (value << 1) ^ (value >> 63))
    }

    @inline(__always)
    static func unzigzag(_ value: UInt64) -> Int64 {
        Int64(bitPattern: value >> 1) ^ -Int64(bitPattern: value & 1)
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
    static func wire(_ code: Code, _ message: String, at path: [any CodingKey]) -> MultiprocessingError {
        MultiprocessingError(code, "at \(WirePathComponent.describe(path)): \(message)")
    }

    /// Converts the standard `EncodingError` and `DecodingError` into the library's error,
    /// leaving library errors and errors of other types as they are.
    static func wrapCodingError(_ error: any Error, _ code: Code) -> any Error {
        if let error = error as? EncodingError {
            switch error {
            case .invalidValue(let value, let context):
                return wire(code, "invalid value \(value): \(context.debugDescription)", at: context.codingPath)
            @unknown default:
                return MultiprocessingError(code, "\(error)")
            }
        }
        if let error = error as? DecodingError {
            switch error {
            case .typeMismatch(let type, let context):
                return wire(code, "type mismatch for \(type): \(context.debugDescription)", at: context.codingPath)
            case .valueNotFound(let type, let context):
                return wire(code, "no value for \(type): \(context.debugDescription)", at: context.codingPath)
            case .keyNotFound(let key, let context):
                return wire(
                    code, "key '\(key.stringValue)' not found: \(context.debugDescription)", at: context.codingPath)
            case .dataCorrupted(let context):
                return wire(code, context.debugDescription, at: context.codingPath)
            @unknown default:
                return MultiprocessingError(code, "\(error)")
            }
        }
        return error
    }
}
