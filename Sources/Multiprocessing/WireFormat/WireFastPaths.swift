// Whole-message fast paths for the commonest messages: a single number (a
// queue's item, a task's argument or result) and an array of fixed-width
// numbers (most map chunks). They write exactly what the general path
// writes, `body 0x00` (the 0x00 is the empty key table), without setting up
// its state; on input they do not recognise as well formed they step aside,
// and the general path decodes it or explains what is wrong.
//
// Neither returns `T?`: unspecialized generic code pays a metadata lookup
// for an optional of a generic type on every call.

/// The fast paths, tried before the general encoder and decoder.
enum WireFastPath {
    /// Appends the message for `value` when a fast path takes its type;
    /// returns whether one did.
    @inline(__always)
    static func append<T>(_ value: T, to buffer: inout [UInt8]) -> Bool {
        if let kind = WireScalars.kind(of: T.self) {
            WireScalars.append(value, kind, to: &buffer)
            return true
        }
        return WireTrivialArrays.append(value, to: &buffer)
    }
}

/// Top-level fixed-width numbers and Bools: `varint` (zigzag for signed
/// types), or their raw little-endian bytes for Bool, Int8, UInt8, Float
/// and Double.
enum WireScalars {
    enum Kind: Int {
        case int, double, bool, int64, uint64, int32, uint32, uint, float, uint8, int8, int16, uint16
    }

    /// In `Kind`'s order, identified once.
    private static let types: [ObjectIdentifier] = [
        ObjectIdentifier(Int.self), ObjectIdentifier(Double.self), ObjectIdentifier(Bool.self),
        ObjectIdentifier(Int64.self), ObjectIdentifier(UInt64.self), ObjectIdentifier(Int32.self),
        ObjectIdentifier(UInt32.self), ObjectIdentifier(UInt.self), ObjectIdentifier(Float.self),
        ObjectIdentifier(UInt8.self), ObjectIdentifier(Int8.self), ObjectIdentifier(Int16.self),
        ObjectIdentifier(UInt16.self),
    ]

    @inline(__always)
    static func kind<T>(of type: T.Type) -> Kind? {
        #if _endian(little)
            guard _isPOD(T.self), MemoryLayout<T>.size <= 8, MemoryLayout<Int>.size == 8 else { return nil }
            return types.firstIndex(of: ObjectIdentifier(T.self)).flatMap(Kind.init(rawValue:))
        #else
            return nil
        #endif
    }

    static func append<T>(_ value: T, _ kind: Kind, to buffer: inout [UInt8]) {
        // The value's bytes, zero-extended: little-endian, so the low bytes.
        var bits: UInt64 = 0
        withUnsafeMutableBytes(of: &bits) { bits in withUnsafeBytes(of: value) { bits.copyMemory(from: $0) } }
        switch kind {
        case .int, .int64: WireFormat.appendVarint(WireFormat.zigzag(Int64(bitPattern: bits)), to: &buffer)
        case .int32: WireFormat.appendVarint(WireFormat.zigzag(Int64(Int32(truncatingIfNeeded: bits))), to: &buffer)
        case .int16: WireFormat.appendVarint(WireFormat.zigzag(Int64(Int16(truncatingIfNeeded: bits))), to: &buffer)
        case .uint64, .uint, .uint32, .uint16: WireFormat.appendVarint(bits, to: &buffer)
        case .bool, .uint8, .int8: buffer.append(UInt8(truncatingIfNeeded: bits))
        case .float: withUnsafeBytes(of: UInt32(truncatingIfNeeded: bits)) { buffer.append(contentsOf: $0) }
        case .double: withUnsafeBytes(of: bits) { buffer.append(contentsOf: $0) }
        }
        buffer.append(0)
    }

    /// The value's bits (its low bytes are the value) when `bytes` are a
    /// well-formed message for `kind`; `nil` otherwise.
    static func bits(_ kind: Kind, from bytes: UnsafeRawBufferPointer) -> UInt64? {
        guard bytes.count >= 2, bytes[bytes.count - 1] == 0 else { return nil }
        let end = bytes.count - 1
        switch kind {
        case .bool:
            return end == 1 && bytes[0] <= 1 ? UInt64(bytes[0]) : nil
        case .uint8, .int8:
            return end == 1 ? UInt64(bytes[0]) : nil
        case .float:
            return end == 4 ? UInt64(bytes.loadUnaligned(as: UInt32.self)) : nil
        case .double:
            return end == 8 ? bytes.loadUnaligned(as: UInt64.self) : nil
        case .int, .int64, .int32, .int16, .uint64, .uint, .uint32, .uint16:
            // A varint filling the body exactly, read as the general decoder reads one.
            var position = 0
            guard let raw = try? WireReader(base: bytes.baseAddress!).varint(&position, end, "a number"),
                position == end
            else { return nil }
            switch kind {
            case .int32, .int16:
                let value = WireFormat.unzigzag(raw)
                let fits = kind == .int32 ? Int32(exactly: value) != nil : Int16(exactly: value) != nil
                return fits ? UInt64(bitPattern: value) : nil
            case .int, .int64:
                return UInt64(bitPattern: WireFormat.unzigzag(raw))
            case .uint32:
                return raw <= UInt64(UInt32.max) ? raw : nil
            case .uint16:
                return raw <= UInt64(UInt16.max) ? raw : nil
            default:
                return raw
            }
        }
    }

    /// The value whose bits `bits` returned.
    @inline(__always)
    static func value<T>(_ bits: UInt64, as type: T.Type) -> T {
        withUnsafeBytes(of: bits) { $0.load(as: T.self) }
    }
}

/// Top-level arrays of fixed-width numbers, encoded and decoded in one copy.
enum WireTrivialArrays {
    /// The array types taken, identified once: naming `[Int].self` in generic
    /// code asks the runtime for the metadata every time.
    private static let types: [ObjectIdentifier] = [
        ObjectIdentifier([Int].self), ObjectIdentifier([Double].self), ObjectIdentifier([UInt8].self),
        ObjectIdentifier([Float].self), ObjectIdentifier([Int32].self), ObjectIdentifier([Int64].self),
        ObjectIdentifier([UInt64].self), ObjectIdentifier([UInt32].self), ObjectIdentifier([UInt].self),
    ]

    /// The element sizes of `types`.
    private static let strides = [8, 8, 1, 4, 4, 8, 8, 4, 8]

    @inline(__always)
    static func kind<T>(of type: T.Type) -> Int? {
        #if _endian(little)
            // An array is one reference: rule out plain values (numbers, most
            // structs) with what the type's layout says, before looking further.
            guard MemoryLayout<T>.size == MemoryLayout<[Int]>.size, !_isPOD(T.self) else { return nil }
            return types.firstIndex(of: ObjectIdentifier(T.self))
        #else
            return nil
        #endif
    }

    /// Appends the message for `value` when it is such an array; returns
    /// whether it was.
    static func append<T>(_ value: T, to buffer: inout [UInt8]) -> Bool {
        switch kind(of: T.self) {
        case 0: append(unsafeBitCast(value, to: [Int].self), to: &buffer)
        case 1: append(unsafeBitCast(value, to: [Double].self), to: &buffer)
        case 2: append(unsafeBitCast(value, to: [UInt8].self), to: &buffer)
        case 3: append(unsafeBitCast(value, to: [Float].self), to: &buffer)
        case 4: append(unsafeBitCast(value, to: [Int32].self), to: &buffer)
        case 5: append(unsafeBitCast(value, to: [Int64].self), to: &buffer)
        case 6: append(unsafeBitCast(value, to: [UInt64].self), to: &buffer)
        case 7: append(unsafeBitCast(value, to: [UInt32].self), to: &buffer)
        case 8: append(unsafeBitCast(value, to: [UInt].self), to: &buffer)
        default: return false
        }
        return true
    }

    /// Where the elements start and how many there are, when `bytes` are a
    /// well-formed message for an array of `kind`; `nil` otherwise, for the
    /// general path to decode or to explain what is wrong.
    static func layout(_ kind: Int, of bytes: UnsafeRawBufferPointer) -> (start: Int, count: Int)? {
        let stride = strides[kind]
        guard bytes.count >= 2, bytes[bytes.count - 1] == 0 else { return nil }
        var position = 0
        guard let count = try? WireReader(base: bytes.baseAddress!).varint(&position, bytes.count - 1, "a count")
        else { return nil }
        // The elements must fill the message exactly, up to the key table's 0x00.
        guard count <= UInt64(bytes.count), Int(count) * stride == bytes.count - 1 - position else { return nil }
        return (position, Int(count))
    }

    /// The array of `kind` (the type `T`) that `layout` found in `bytes`.
    static func array<T>(
        _ kind: Int, _ layout: (start: Int, count: Int), from bytes: UnsafeRawBufferPointer, as type: T.Type
    ) -> T {
        switch kind {
        case 0: unsafeBitCast(elements(Int.self, layout, bytes), to: T.self)
        case 1: unsafeBitCast(elements(Double.self, layout, bytes), to: T.self)
        case 2: unsafeBitCast(elements(UInt8.self, layout, bytes), to: T.self)
        case 3: unsafeBitCast(elements(Float.self, layout, bytes), to: T.self)
        case 4: unsafeBitCast(elements(Int32.self, layout, bytes), to: T.self)
        case 5: unsafeBitCast(elements(Int64.self, layout, bytes), to: T.self)
        case 6: unsafeBitCast(elements(UInt64.self, layout, bytes), to: T.self)
        case 7: unsafeBitCast(elements(UInt32.self, layout, bytes), to: T.self)
        default: unsafeBitCast(elements(UInt.self, layout, bytes), to: T.self)
        }
    }

    private static func append<E>(_ array: [E], to buffer: inout [UInt8]) {
        WireFormat.appendVarint(UInt64(array.count), to: &buffer)
        array.withUnsafeBytes { buffer.append(contentsOf: $0) }
        buffer.append(0)
    }

    private static func elements<E>(
        _ element: E.Type, _ layout: (start: Int, count: Int), _ bytes: UnsafeRawBufferPointer
    ) -> [E] {
        [E](unsafeUninitializedCapacity: layout.count) { elements, initialized in
            UnsafeMutableRawBufferPointer(elements).copyMemory(
                from: UnsafeRawBufferPointer(
                    rebasing: bytes[layout.start..<(layout.start + layout.count * MemoryLayout<E>.stride)]))
            initialized = layout.count
        }
    }
}
