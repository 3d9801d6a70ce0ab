// The whole-message fast path for arrays of fixed-width numbers, the payload
// of most map chunks: their encoding is `varint(count)`, the raw
// little-endian elements and an empty key table (one 0x00 byte), exactly what
// the general path writes, without setting up its state.

/// Top-level arrays of fixed-width numbers, encoded and decoded in one copy.
enum WireTrivialArrays {
    /// Appends the message for `value` when it is such an array; returns
    /// whether it was.
    @inline(__always)
    static func append<T>(_ value: T, to buffer: inout [UInt8]) -> Bool {
        #if _endian(little)
            return append(value, as: Int.self, to: &buffer) || append(value, as: Double.self, to: &buffer)
                || append(value, as: UInt8.self, to: &buffer) || append(value, as: Float.self, to: &buffer)
                || append(value, as: Int32.self, to: &buffer) || append(value, as: Int64.self, to: &buffer)
                || append(value, as: UInt64.self, to: &buffer) || append(value, as: UInt32.self, to: &buffer)
                || append(value, as: UInt.self, to: &buffer)
        #else
            return false
        #endif
    }

    /// The array `bytes` hold when `T` is such an array and the message is
    /// well formed; `nil` otherwise, for the general path to decode or to
    /// explain what is wrong.
    @inline(__always)
    static func decode<T>(_ type: T.Type, from bytes: UnsafeRawBufferPointer) -> T? {
        #if _endian(little)
            return decode(T.self, as: Int.self, from: bytes) ?? decode(T.self, as: Double.self, from: bytes)
                ?? decode(T.self, as: UInt8.self, from: bytes) ?? decode(T.self, as: Float.self, from: bytes)
                ?? decode(T.self, as: Int32.self, from: bytes) ?? decode(T.self, as: Int64.self, from: bytes)
                ?? decode(T.self, as: UInt64.self, from: bytes) ?? decode(T.self, as: UInt32.self, from: bytes)
                ?? decode(T.self, as: UInt.self, from: bytes)
        #else
            return nil
        #endif
    }

    @inline(__always)
    private static func append<T, E>(_ value: T, as element: E.Type, to buffer: inout [UInt8]) -> Bool {
        guard T.self == [E].self else { return false }
        let array = unsafeBitCast(value, to: [E].self)
        var count = UInt64(array.count)
        while count >= 0x80 {
            buffer.append(UInt8(truncatingIfNeeded: count) | 0x80)
            count >>= 7
        }
        buffer.append(UInt8(count))
        array.withUnsafeBytes { buffer.append(contentsOf: $0) }
        buffer.append(0)
        return true
    }

    @inline(__always)
    private static func decode<T, E>(_ type: T.Type, as element: E.Type, from bytes: UnsafeRawBufferPointer) -> T? {
        guard T.self == [E].self, let base = bytes.baseAddress, bytes.count >= 2, bytes[bytes.count - 1] == 0 else {
            return nil
        }
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
        let array = [E](unsafeUninitializedCapacity: Int(count)) { elements, initialized in
            UnsafeMutableRawBufferPointer(elements).copyMemory(
                from: UnsafeRawBufferPointer(start: base + position, count: Int(count) * stride))
            initialized = Int(count)
        }
        return unsafeBitCast(array, to: T.self)
    }
}
