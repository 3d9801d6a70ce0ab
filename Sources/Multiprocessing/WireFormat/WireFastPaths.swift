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
        if let kind = scalar(T.self) {
            kind.append(value, to: &buffer)
            buffer.append(0)
            return true
        }
        return WireTrivialArrays.append(value, to: &buffer)
    }

    /// The primitive of a top-level number or Bool (of at most 64 bits).
    @inline(__always)
    static func scalar<T>(_ type: T.Type) -> WirePrimitive? {
        // Ruled out by layout first: most messages are structs, classes or arrays.
        guard _isPOD(T.self), MemoryLayout<T>.size <= 8, let kind = WirePrimitive.of(T.self), kind.isScalar
        else { return nil }
        return kind
    }

    /// The bits of the scalar of `kind` when `bytes` are a well-formed
    /// message for it; `nil` otherwise.
    static func scalarBits(_ kind: WirePrimitive, from bytes: UnsafeRawBufferPointer) -> UInt64? {
        guard bytes.count >= 2, bytes[bytes.count - 1] == 0 else { return nil }
        // The value must fill the body exactly, read as the general decoder reads it.
        var position = 0
        let end = bytes.count - 1
        guard let bits = try? WireReader(base: bytes.baseAddress!).scalarBits(kind, &position, end), position == end
        else { return nil }
        return bits
    }
}

/// Top-level arrays of fixed-width numbers, encoded and decoded in one copy.
enum WireTrivialArrays {
    /// The element types taken, in the order of `types`.
    private static let kinds: [WirePrimitive] = [.int, .double, .uint8, .float, .int32, .int64, .uint64, .uint32, .uint]

    /// The array types taken, identified once: naming `[Int].self` in generic
    /// code asks the runtime for the metadata every time.
    private static let types: [ObjectIdentifier] = [
        ObjectIdentifier([Int].self), ObjectIdentifier([Double].self), ObjectIdentifier([UInt8].self),
        ObjectIdentifier([Float].self), ObjectIdentifier([Int32].self), ObjectIdentifier([Int64].self),
        ObjectIdentifier([UInt64].self), ObjectIdentifier([UInt32].self), ObjectIdentifier([UInt].self),
    ]

    @inline(__always)
    static func kind<T>(of type: T.Type) -> WirePrimitive? {
        #if _endian(little)
            // An array is one reference: rule out plain values (numbers, most
            // structs) with what the type's layout says, before looking further.
            guard MemoryLayout<T>.size == MemoryLayout<[Int]>.size, !_isPOD(T.self),
                let index = types.firstIndex(of: ObjectIdentifier(T.self))
            else { return nil }
            return kinds[index]
        #else
            return nil
        #endif
    }

    /// Appends the message for `value` when it is such an array; returns
    /// whether it was.
    static func append<T>(_ value: T, to buffer: inout [UInt8]) -> Bool {
        switch kind(of: T.self) {
        case .int: append(unsafeBitCast(value, to: [Int].self), to: &buffer)
        case .double: append(unsafeBitCast(value, to: [Double].self), to: &buffer)
        case .uint8: append(unsafeBitCast(value, to: [UInt8].self), to: &buffer)
        case .float: append(unsafeBitCast(value, to: [Float].self), to: &buffer)
        case .int32: append(unsafeBitCast(value, to: [Int32].self), to: &buffer)
        case .int64: append(unsafeBitCast(value, to: [Int64].self), to: &buffer)
        case .uint64: append(unsafeBitCast(value, to: [UInt64].self), to: &buffer)
        case .uint32: append(unsafeBitCast(value, to: [UInt32].self), to: &buffer)
        case .uint: append(unsafeBitCast(value, to: [UInt].self), to: &buffer)
        default: return false  // not such an array (nil), or an element type no array here has
        }
        return true
    }

    /// Where the elements start and how many there are, when `bytes` are a
    /// well-formed message for an array of `kind`; `nil` otherwise, for the
    /// general path to decode or to explain what is wrong.
    static func layout(_ kind: WirePrimitive, of bytes: UnsafeRawBufferPointer) -> (start: Int, count: Int)? {
        let stride = kind.size
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
        _ kind: WirePrimitive, _ layout: (start: Int, count: Int), from bytes: UnsafeRawBufferPointer, as type: T.Type
    ) -> T {
        switch kind {
        case .int: unsafeBitCast(elements(Int.self, layout, bytes), to: T.self)
        case .double: unsafeBitCast(elements(Double.self, layout, bytes), to: T.self)
        case .uint8: unsafeBitCast(elements(UInt8.self, layout, bytes), to: T.self)
        case .float: unsafeBitCast(elements(Float.self, layout, bytes), to: T.self)
        case .int32: unsafeBitCast(elements(Int32.self, layout, bytes), to: T.self)
        case .int64: unsafeBitCast(elements(Int64.self, layout, bytes), to: T.self)
        case .uint64: unsafeBitCast(elements(UInt64.self, layout, bytes), to: T.self)
        case .uint32: unsafeBitCast(elements(UInt32.self, layout, bytes), to: T.self)
        case .uint: unsafeBitCast(elements(UInt.self, layout, bytes), to: T.self)
        default: preconditionFailure("no array of \(kind.name) is taken")
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
