// The whole-message fast path for arrays of fixed-width numbers, the payload
// of most map chunks: their encoding is `varint(count)`, the raw
// little-endian elements and an empty key table (one 0x00 byte), exactly what
// the general path writes, without setting up its state.

/// Top-level arrays of fixed-width numbers, encoded and decoded in one copy.
enum WireTrivialArrays {
    /// The array types taken, identified once: naming `[Int].self` in generic
    /// code asks the runtime for the metadata every time.
    private static let types: [ObjectIdentifier] = [
        ObjectIdentifier([Int].self), ObjectIdentifier([Double].self), ObjectIdentifier([UInt8].self),
        ObjectIdentifier([Float].self), ObjectIdentifier([Int32].self), ObjectIdentifier([Int64].self),
        ObjectIdentifier([UInt64].self), ObjectIdentifier([UInt32].self), ObjectIdentifier([UInt].self),
    ]

    private static func kind<T>(of type: T.Type) -> Int? {
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

    /// The array `bytes` hold when `T` is such an array and the message is
    /// well formed; `nil` otherwise, for the general path to decode or to
    /// explain what is wrong.
    static func decode<T>(_ type: T.Type, from bytes: UnsafeRawBufferPointer) -> T? {
        switch kind(of: T.self) {
        case 0: elements(Int.self, from: bytes).map { unsafeBitCast($0, to: T.self) }
        case 1: elements(Double.self, from: bytes).map { unsafeBitCast($0, to: T.self) }
        case 2: elements(UInt8.self, from: bytes).map { unsafeBitCast($0, to: T.self) }
        case 3: elements(Float.self, from: bytes).map { unsafeBitCast($0, to: T.self) }
        case 4: elements(Int32.self, from: bytes).map { unsafeBitCast($0, to: T.self) }
        case 5: elements(Int64.self, from: bytes).map { unsafeBitCast($0, to: T.self) }
        case 6: elements(UInt64.self, from: bytes).map { unsafeBitCast($0, to: T.self) }
        case 7: elements(UInt32.self, from: bytes).map { unsafeBitCast($0, to: T.self) }
        case 8: elements(UInt.self, from: bytes).map { unsafeBitCast($0, to: T.self) }
        default: nil
        }
    }

    private static func append<E>(_ array: [E], to buffer: inout [UInt8]) {
        var count = UInt64(array.count)
        while count >= 0x80 {
            buffer.append(UInt8(truncatingIfNeeded: count) | 0x80)
            count >>= 7
        }
        buffer.append(UInt8(count))
        array.withUnsafeBytes { buffer.append(contentsOf: $0) }
        buffer.append(0)
    }

    private static func elements<E>(_ element: E.Type, from bytes: UnsafeRawBufferPointer) -> [E]? {
        guard let base = bytes.baseAddress, bytes.count >= 2, bytes[bytes.count - 1] == 0 else { return nil }
        var position = 0
        var count: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard position < bytes.count - 1, shift < 63 else { return nil }
            let next = bytes[position]
            position += 1
            count |= UInt64(next & 0x7f) << shift
            if next < 0x80 { break }
            shift += 7
        }
        let stride = MemoryLayout<E>.stride
        // The elements must fill the message exactly, up to the key table's 0x00.
        guard count <= UInt64(bytes.count), Int(count) * stride == bytes.count - 1 - position else { return nil }
        return [E](unsafeUninitializedCapacity: Int(count)) { elements, initialized in
            UnsafeMutableRawBufferPointer(elements).copyMemory(
                from: UnsafeRawBufferPointer(start: base + position, count: Int(count) * stride))
            initialized = Int(count)
        }
    }
}
