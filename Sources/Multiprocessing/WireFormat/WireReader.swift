/// Bounds-checked reads from the input; failures carry no coding path yet.
struct WireReader {
    let base: UnsafeRawPointer

    @inline(__always)
    func byte(_ position: Int) -> UInt8 {
        base.load(fromByteOffset: position, as: UInt8.self)
    }

    @inline(__always)
    func varint(_ position: inout Int, _ limit: Int, _ what: StaticString) throws(WireFault) -> UInt64 {
        if position < limit {
            let first = byte(position)
            if first < 0x80 {
                position += 1
                return UInt64(first)
            }
        }
        return try longVarint(&position, limit, what)
    }

    private func longVarint(_ position: inout Int, _ limit: Int, _ what: StaticString) throws(WireFault) -> UInt64 {
        var result: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard position < limit else {
                throw WireFault("truncated varint for \(what)")
            }
            let next = byte(position)
            position += 1
            // The tenth byte may only hold the 64th bit.
            if shift == 63 && next > 1 {
                throw WireFault("varint for \(what) overflows 64 bits")
            }
            result |= UInt64(next & 0x7f) << shift
            if next < 0x80 {
                return result
            }
            shift += 7
        }
    }

    /// Reads a byte length and checks that that many bytes remain.
    @inline(__always)
    func length(_ position: inout Int, _ limit: Int, _ what: StaticString) throws(WireFault) -> Int {
        let value = try varint(&position, limit, what)
        guard value <= UInt64(limit - position) else {
            throw WireFault("length \(value) of \(what) exceeds the \(limit - position) bytes that remain")
        }
        return Int(value)
    }

    /// Reads an element count and checks it against the bytes that remain,
    /// given the fewest bytes one element can take.
    @inline(__always)
    func count(
        _ position: inout Int, _ limit: Int, _ what: StaticString, bytesEach: Int
    ) throws(WireFault) -> Int {
        let value = try varint(&position, limit, what)
        guard value <= UInt64((limit - position) / bytesEach) else {
            throw WireFault("\(what) claims \(value) elements but only \(limit - position) bytes remain")
        }
        return Int(value)
    }

    @inline(__always)
    func fixed<T: FixedWidthInteger>(
        _ type: T.Type, _ position: inout Int, _ limit: Int, _ what: StaticString
    ) throws(WireFault) -> T {
        let size = MemoryLayout<T>.size
        guard limit - position >= size else {
            throw WireFault("expected \(size) bytes for \(what), \(limit - position) remain")
        }
        let value = T(littleEndian: base.loadUnaligned(fromByteOffset: position, as: T.self))
        position += size
        return value
    }

    func string(_ position: inout Int, _ limit: Int, _ what: StaticString) throws(WireFault) -> String {
        let count = try length(&position, limit, what)
        let bytes = UnsafeRawBufferPointer(start: base + position, count: count)
        let string: String?
        if count <= 256 {
            // `String(validating:as:)` costs about 100 ns of generic overhead per
            // call; for short strings validating here is twice as fast.
            string =
                WireReader.isValidUTF8(bytes)
                ? bytes.withMemoryRebound(to: UInt8.self) { String(decoding: $0, as: UTF8.self) } : nil
        } else {
            string = bytes.withMemoryRebound(to: UInt8.self) { String(validating: $0, as: UTF8.self) }
        }
        guard let string else {
            throw WireFault("invalid UTF-8 in \(what)")
        }
        position += count
        return string
    }

    /// Checks well-formed UTF-8 as Unicode defines it: no overlong forms, no
    /// surrogates, nothing above U+10FFFF.
    static func isValidUTF8(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let count = bytes.count
        var index = 0
        guard let base = bytes.baseAddress else {
            return true
        }
        while index < count {
            // Skip ASCII eight bytes at a time.
            while index + 8 <= count
                && base.loadUnaligned(fromByteOffset: index, as: UInt64.self) & 0x8080_8080_8080_8080 == 0
            {
                index += 8
            }
            guard index < count else {
                break
            }
            let lead = bytes[index]
            if lead < 0x80 {
                index += 1
                continue
            }
            let length: Int
            var low: UInt8 = 0x80
            var high: UInt8 = 0xBF
            switch lead {
            case 0xC2...0xDF: length = 2
            case 0xE0: length = 3; low = 0xA0
            case 0xE1...0xEC, 0xEE...0xEF: length = 3
            case 0xED: length = 3; high = 0x9F
            case 0xF0: length = 4; low = 0x90
            case 0xF1...0xF3: length = 4
            case 0xF4: length = 4; high = 0x8F
            default: return false
            }
            guard index + length <= count else {
                return false
            }
            let second = bytes[index + 1]
            guard second >= low && second <= high else {
                return false
            }
            var next = index + 2
            while next < index + length {
                guard bytes[next] & 0xC0 == 0x80 else {
                    return false
                }
                next += 1
            }
            index += length
        }
        return true
    }
}
