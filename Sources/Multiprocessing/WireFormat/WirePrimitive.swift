// The types the wire format writes itself rather than through their Codable
// methods, and how each is written: the one table that the encoder, the
// reader, the arrays and the whole-message fast paths read.
//
// | type                        | written as                                   |
// |-----------------------------|----------------------------------------------|
// | String                      | varint byte count, UTF-8                     |
// | Int, Int64, Int32, Int16    | zigzag varint (range-checked on reading)     |
// | UInt, UInt64, UInt32, UInt16| varint (range-checked on reading)            |
// | UInt8, Int8                 | one byte                                     |
// | Bool                        | one byte, 0 or 1                             |
// | Float, Double               | their bits, 4 or 8 bytes little-endian       |
// | Int128, UInt128             | 16 bytes little-endian                       |
//
// Arrays of every fixed-width type but the 128-bit ones (Int and UInt where
// they are 64 bits) are written as a varint count and the elements' raw
// little-endian bytes.

/// A primitive type of the wire format.
enum WirePrimitive: Int, CaseIterable, Sendable {
    case string, int, double, bool, int64, uint64, int32, uint32, uint8, int8, int16, uint16, uint, float
    case int128, uint128

    /// The primitive `T` is, if any. Comparisons of types, which specialized
    /// code folds to a constant; `nil` costs one comparison per case.
    @inline(__always)
    static func of<T>(_ type: T.Type) -> WirePrimitive? {
        if T.self == String.self { return .string }
        if T.self == Int.self { return .int }
        if T.self == Double.self { return .double }
        if T.self == Bool.self { return .bool }
        if T.self == Int64.self { return .int64 }
        if T.self == UInt64.self { return .uint64 }
        if T.self == Int32.self { return .int32 }
        if T.self == UInt32.self { return .uint32 }
        if T.self == UInt8.self { return .uint8 }
        if T.self == Int8.self { return .int8 }
        if T.self == Int16.self { return .int16 }
        if T.self == UInt16.self { return .uint16 }
        if T.self == UInt.self { return .uint }
        if T.self == Float.self { return .float }
        if T.self == Int128.self { return .int128 }
        if T.self == UInt128.self { return .uint128 }
        return nil
    }

    /// How a value is written.
    enum Encoding {
        case utf8, zigzag, varint, byte, bool, fixed
    }

    var encoding: Encoding {
        switch self {
        case .string: .utf8
        case .int, .int64, .int32, .int16: .zigzag
        case .uint, .uint64, .uint32, .uint16: .varint
        case .uint8, .int8: .byte
        case .bool: .bool
        case .double, .float, .int128, .uint128: .fixed
        }
    }

    /// The size of a value in memory (a String's is its struct's).
    var size: Int {
        switch self {
        case .string: MemoryLayout<String>.size
        case .int, .uint: MemoryLayout<Int>.size
        case .int64, .uint64, .double: 8
        case .int32, .uint32, .float: 4
        case .int16, .uint16: 2
        case .uint8, .int8, .bool: 1
        case .int128, .uint128: 16
        }
    }

    /// For messages: "an Int32".
    var name: StaticString {
        switch self {
        case .string: "a String"
        case .int: "an Int"
        case .double: "a Double"
        case .bool: "a Bool"
        case .int64: "an Int64"
        case .uint64: "a UInt64"
        case .int32: "an Int32"
        case .uint32: "a UInt32"
        case .uint8: "a UInt8"
        case .int8: "an Int8"
        case .int16: "an Int16"
        case .uint16: "a UInt16"
        case .uint: "a UInt"
        case .float: "a Float"
        case .int128: "an Int128"
        case .uint128: "a UInt128"
        }
    }

    /// A number or Bool of at most 64 bits: its value fits in a `UInt64`'s bits.
    var isScalar: Bool { self != .string && size <= 8 }

    /// Whether arrays of it are written as their elements' raw bytes.
    var isTrivialElement: Bool { isScalar && (MemoryLayout<Int>.size == 8 || (self != .int && self != .uint)) }

    // MARK: Writing

    /// Appends `value`, a `T` of this primitive other than String.
    @inline(__always)
    func append<T>(_ value: T, to buffer: inout [UInt8]) {
        guard isScalar else {
            // Int128 and UInt128: their 16 bytes, little-endian.
            withUnsafeBytes(of: value) { bytes in
                #if _endian(little)
                    buffer.append(contentsOf: bytes)
                #else
                    buffer.append(contentsOf: bytes.reversed())
                #endif
            }
            return
        }
        let bits = Self.bits(of: value)
        switch encoding {
        case .zigzag: WireFormat.appendVarint(WireFormat.zigzag(signExtended(bits)), to: &buffer)
        case .varint: WireFormat.appendVarint(bits, to: &buffer)
        case .byte, .bool: buffer.append(UInt8(truncatingIfNeeded: bits))
        case .fixed where size == 4: withUnsafeBytes(of: UInt32(truncatingIfNeeded: bits).littleEndian) {
                buffer.append(contentsOf: $0)
            }
        case .fixed: withUnsafeBytes(of: bits.littleEndian) { buffer.append(contentsOf: $0) }
        case .utf8: preconditionFailure("a String is written by the encoder")
        }
    }

    /// The bits of a scalar, zero-extended: `UInt64(truncatingIfNeeded:)` of its bit pattern.
    @inline(__always)
    static func bits<T>(of value: T) -> UInt64 {
        var bits: UInt64 = 0
        withUnsafeMutableBytes(of: &bits) { bits in
            withUnsafeBytes(of: value) { value in
                #if _endian(little)
                    bits.copyMemory(from: value)
                #else
                    UnsafeMutableRawBufferPointer(rebasing: bits[(8 - value.count)...]).copyMemory(from: value)
                #endif
            }
        }
        return bits
    }

    /// The value of a scalar `T` of this primitive whose bits are `bits`.
    ///
    /// An aligned load (every scalar's alignment divides its offset in the
    /// `UInt64`): unspecialized, `loadUnaligned` asks the runtime for generic
    /// metadata on every call.
    @inline(__always)
    static func value<T>(_ bits: UInt64, as type: T.Type) -> T {
        withUnsafeBytes(of: bits) { bits in
            #if _endian(little)
                bits.load(as: T.self)
            #else
                bits.load(fromByteOffset: 8 - MemoryLayout<T>.size, as: T.self)
            #endif
        }
    }

    /// A signed scalar's bits, sign-extended to 64.
    @inline(__always)
    private func signExtended(_ bits: UInt64) -> Int64 {
        let unused = UInt64(64 - 8 * size)
        return Int64(bitPattern: bits << unused) >> unused
    }
}

extension WireReader {
    /// Reads a scalar of `kind` and returns its bits (see ``WirePrimitive/bits(of:)``),
    /// refusing a value out of the type's range.
    @inline(__always)
    func scalarBits(_ kind: WirePrimitive, _ position: inout Int, _ limit: Int) throws(WireFault) -> UInt64 {
        let size = kind.size
        switch kind.encoding {
        case .zigzag:
            let value = WireFormat.unzigzag(try varint(&position, limit, kind.name))
            if size < 8 {
                let bound = Int64(1) << (8 * size - 1)
                guard value >= -bound && value < bound else {
                    throw WireFault("value \(value) does not fit in \(kind.name)")
                }
            }
            return UInt64(bitPattern: value)
        case .varint:
            let value = try varint(&position, limit, kind.name)
            guard size == 8 || value < 1 << UInt64(8 * size) else {
                throw WireFault("value \(value) does not fit in \(kind.name)")
            }
            return value
        case .byte, .bool:
            guard position < limit else {
                throw WireFault("expected 1 byte for \(kind.name), 0 remain")
            }
            let value = byte(position)
            guard kind != .bool || value <= 1 else {
                throw WireFault("invalid Bool byte \(value)")
            }
            position += 1
            return UInt64(value)
        case .fixed where size == 4:
            return UInt64(try fixed(UInt32.self, &position, limit, kind.name))
        case .fixed:
            return try fixed(UInt64.self, &position, limit, kind.name)
        case .utf8:
            preconditionFailure("a String has no bits")
        }
    }

    /// Reads a value of `T`, the primitive `kind`. It returns `T`, not `T?`:
    /// in unspecialized code an optional of a generic type costs a metadata
    /// lookup on every call.
    @inline(__always)
    func primitive<T>(_ type: T.Type, _ kind: WirePrimitive, _ position: inout Int, _ limit: Int) throws(WireFault)
        -> T
    {
        switch kind {
        case .string:
            // T is String.
            return unsafeBitCast(try string(&position, limit, kind.name), to: T.self)
        case .int128, .uint128:
            let value = try fixed(UInt128.self, &position, limit, kind.name)
            return withUnsafeBytes(of: value) { $0.load(as: T.self) }
        default:
            return WirePrimitive.value(try scalarBits(kind, &position, limit), as: T.self)
        }
    }
}
