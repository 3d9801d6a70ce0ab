/// Decodes `Decodable` values from the bytes ``WireEncoder`` writes.
///
/// The format carries no type information, so the type passed to `decode`
/// must be the type that was encoded. Input is treated as untrusted: bytes
/// that are truncated, corrupt or describe another type throw instead of
/// crashing, no length or count read from the input is allocated before
/// the bytes it claims are known to be there, nesting is limited to 512
/// levels, and bytes left over after the value are an error.
///
/// Keys of keyed containers are matched by name, so a hand-written
/// `init(from:)` may decode keys in any order and use `contains` and
/// `allKeys`; decoding them in the order they were encoded is fastest.
/// An unkeyed container that is an element of an array or of another
/// unkeyed container must be decoded to its end, because elements carry no
/// length from which its end could be found.
public struct WireDecoder: Sendable {
    /// Context values visible to `Decodable` implementations through `decoder.userInfo`.
    ///
    /// Values must be `Sendable` so the decoder can be shared between tasks;
    /// `init(from:)` sees them as `[CodingUserInfoKey: Any]`.
    public var userInfo: [CodingUserInfoKey: any Sendable] = [:]

    /// Creates a decoder with an empty ``userInfo``.
    ///
    /// A decoder holds no state between calls, so one can be reused and shared freely.
    public init() {}

    /// Decodes a value of the given type from a byte array.
    ///
    /// - Parameters:
    ///   - type: The type that was encoded.
    ///   - bytes: One complete message written by ``WireEncoder``.
    /// - Returns: The decoded value.
    /// - Throws: ``MultiprocessingError`` with code `decodingFailed` when the
    ///   bytes are not a valid encoding of `type`, including when bytes are
    ///   left over; the message names the coding path where decoding failed.
    ///   Errors of other types thrown by an `init(from:)` pass through unchanged.
    public func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        try bytes.withUnsafeBytes { try decode(type, from: $0) }
    }

    /// Decodes a value of the given type from raw memory, without copying it first.
    ///
    /// The memory is read only during the call; nothing keeps a pointer to it.
    ///
    /// - Parameters:
    ///   - type: The type that was encoded.
    ///   - bytes: One complete message written by ``WireEncoder``.
    /// - Returns: The decoded value.
    /// - Throws: ``MultiprocessingError`` with code `decodingFailed` when the
    ///   bytes are not a valid encoding of `type`; errors of other types thrown
    ///   by an `init(from:)` pass through unchanged.
    public func decode<T: Decodable>(_ type: T.Type, from bytes: UnsafeRawBufferPointer) throws -> T {
        if let kind = WireScalars.kind(of: T.self) {
            if let bits = WireScalars.bits(kind, from: bytes) { return WireScalars.value(bits, as: T.self) }
        } else if let kind = WireTrivialArrays.kind(of: T.self), let layout = WireTrivialArrays.layout(kind, of: bytes)
        {
            return WireTrivialArrays.array(kind, layout, from: bytes, as: T.self)
        }
        let state: WireDecodingState
        do {
            state = try WireDecodingState(bytes: bytes, userInfo: userInfo)
        } catch {
            throw MultiprocessingError(.decodingFailed, "invalid message: \(error.message)")
        }
        // A decoder or container that escaped `init(from:)` must not read the memory later.
        defer { state.isActive = false }
        do {
            var position = 0
            return try state.decodeValue(
                T.self, at: &position, limit: state.bodyEnd, exact: true, parent: -1, key: .none, collapsed: false)
        } catch {
            throw MultiprocessingError.wireWrappingCodingError(error, .decodingFailed)
        }
    }
}

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

    func signed(_ position: inout Int, _ limit: Int, _ what: StaticString) throws(WireFault) -> Int64 {
        WireFormat.unzigzag(try varint(&position, limit, what))
    }

    func narrow<T: FixedWidthInteger, Source: BinaryInteger>(_ value: Source, _ what: StaticString) throws(WireFault)
        -> T
    {
        guard let narrowed = T(exactly: value) else {
            throw WireFault("value \(value) does not fit in \(what)")
        }
        return narrowed
    }

    /// Reads one of the types every container has a method for
    /// (`WireFormat.isPrimitive(T.self)` must be true). It returns `T`, not
    /// `T?`: in unspecialized code an optional of a generic type costs a
    /// metadata lookup on every call.
    @inline(__always)
    func primitive<T>(_ type: T.Type, _ position: inout Int, _ limit: Int) throws(WireFault) -> T {
        if T.self == String.self {
            return unsafeBitCast(try string(&position, limit, "a String"), to: T.self)
        } else if T.self == Int.self {
            let value: Int = try narrow(try signed(&position, limit, "an Int"), "an Int")
            return unsafeBitCast(value, to: T.self)
        } else if T.self == Double.self {
            let bits = try fixed(UInt64.self, &position, limit, "a Double")
            return unsafeBitCast(Double(bitPattern: bits), to: T.self)
        } else if T.self == Bool.self {
            guard position < limit else {
                throw WireFault("expected 1 byte for a Bool, 0 remain")
            }
            let value = byte(position)
            guard value <= 1 else {
                throw WireFault("invalid Bool byte \(value)")
            }
            position += 1
            return unsafeBitCast(value == 1, to: T.self)
        } else if T.self == Int64.self {
            return unsafeBitCast(try signed(&position, limit, "an Int64"), to: T.self)
        } else if T.self == UInt64.self {
            return unsafeBitCast(try varint(&position, limit, "a UInt64"), to: T.self)
        } else if T.self == Int32.self {
            let value: Int32 = try narrow(try signed(&position, limit, "an Int32"), "an Int32")
            return unsafeBitCast(value, to: T.self)
        } else if T.self == UInt32.self {
            let value: UInt32 = try narrow(try varint(&position, limit, "a UInt32"), "a UInt32")
            return unsafeBitCast(value, to: T.self)
        } else if T.self == UInt8.self || T.self == Int8.self {
            guard position < limit else {
                throw WireFault("expected 1 byte for a \(T.self), 0 remain")
            }
            let value = byte(position)
            position += 1
            return unsafeBitCast(value, to: T.self)
        } else if T.self == Int16.self {
            let value: Int16 = try narrow(try signed(&position, limit, "an Int16"), "an Int16")
            return unsafeBitCast(value, to: T.self)
        } else if T.self == UInt16.self {
            let value: UInt16 = try narrow(try varint(&position, limit, "a UInt16"), "a UInt16")
            return unsafeBitCast(value, to: T.self)
        } else if T.self == UInt.self {
            let value: UInt = try narrow(try varint(&position, limit, "a UInt"), "a UInt")
            return unsafeBitCast(value, to: T.self)
        } else if T.self == Float.self {
            let bits = try fixed(UInt32.self, &position, limit, "a Float")
            return unsafeBitCast(Float(bitPattern: bits), to: T.self)
        } else if T.self == Int128.self {
            return unsafeBitCast(try fixed(Int128.self, &position, limit, "an Int128"), to: T.self)
        } else if T.self == UInt128.self {
            return unsafeBitCast(try fixed(UInt128.self, &position, limit, "a UInt128"), to: T.self)
        }
        preconditionFailure("\(T.self) is not a primitive of the wire format")
    }
}

/// A value or container being read, kept on the decoder's frame stack.
struct WireDecodingFrame: WirePathFrame {
    enum Kind {
        /// A value whose `init(from:)` has not asked for a container yet.
        case value
        case keyed
        case unkeyed
        case single
        /// An array, set or dictionary; only there for coding paths.
        case collection
    }

    var serial: Int
    var parent: Int
    var depth: Int
    var kind: Kind
    var start: Int
    var limit: Int
    /// Whether the value must end exactly at `limit` (it fills a keyed entry,
    /// a nested container's length, or the message).
    var exact: Bool
    /// Where the value ends, once known; -1 before.
    var end = -1
    /// Entries of a keyed container, elements of an unkeyed one.
    var count = 0
    /// The first entry or element, or a single value's value.
    var contentStart = 0
    /// Where the next keyed entry probably is: fields are usually decoded in the order they were encoded.
    var hintPosition = 0
    var hintIndex = 0
    /// Whether a single value container holds nil.
    var holdsNil = false
    var key: WirePathComponent
}

/// The state of one `decode` call, shared by all its containers.
///
/// Only the thread running that call touches it, and no access to a property
/// overlaps another, so the runtime exclusivity checks are turned off for the
/// hot properties.
final class WireDecodingState: WireFrameStack {
    static let failureCode = MultiprocessingError.Code.decodingFailed

    let reader: WireReader
    let bodyEnd: Int
    let keys: [String]
    private var keyLookup: [String: Int] = [:]
    @exclusivity(unchecked) var frames: [WireDecodingFrame] = []
    var nextSerial = 0
    @exclusivity(unchecked) var isActive = true
    let userInfo: [CodingUserInfoKey: any Sendable]
    /// `userInfo` as `Codable` hands it out, converted on first use.
    lazy var anyUserInfo: [CodingUserInfoKey: Any] = userInfo.mapValues { $0 as Any }

    /// Reads the key table from the end of the message.
    init(bytes: UnsafeRawBufferPointer, userInfo: [CodingUserInfoKey: any Sendable]) throws(WireFault) {
        guard let base = bytes.baseAddress, !bytes.isEmpty else {
            throw WireFault("no bytes")
        }
        let reader = WireReader(base: base)
        var end = bytes.count
        var tableLength: UInt64 = 0
        var shift: UInt64 = 0
        while true {
            guard end > 0 else {
                throw WireFault("the key table length at its end is truncated")
            }
            guard shift < 56 else {
                throw WireFault("the key table length at its end is too large")
            }
            end -= 1
            let next = reader.byte(end)
            tableLength |= UInt64(next & 0x7f) << shift
            if next & 0x80 == 0 {
                break
            }
            shift += 7
        }
        guard tableLength <= UInt64(end) else {
            throw WireFault("key table length \(tableLength) exceeds the \(end) bytes before it")
        }
        let tableStart = end - Int(tableLength)
        var keys: [String] = []
        if tableLength > 0 {
            var position = tableStart
            let count = try reader.count(&position, end, "the key table", bytesEach: 1)
            keys.reserveCapacity(count)
            for _ in 0..<count {
                keys.append(try reader.string(&position, end, "a key name"))
            }
            guard position == end else {
                throw WireFault("\(end - position) unexpected bytes after the key table")
            }
        }
        self.reader = reader
        self.keys = keys
        self.bodyEnd = tableStart
        self.userInfo = userInfo
    }

    /// Checks that a container or decoder still belongs to a value being decoded.
    @inline(__always)
    func check(_ frame: Int, _ serial: Int) throws {
        guard isActive && frame >= 0 && frame < frames.count && frames[frame].serial == serial else {
            throw MultiprocessingError(
                .decodingFailed, "a decoder or container was used after the value it belongs to was decoded")
        }
    }

    func pushFrame(
        _ kind: WireDecodingFrame.Kind, parent: Int, key: WirePathComponent, start: Int, limit: Int, exact: Bool
    ) throws -> Int {
        let depth = parent >= 0 ? frames[parent].depth + 1 : 1
        guard depth <= WireFormat.maxDepth else {
            throw failure("values nest deeper than \(WireFormat.maxDepth) levels", frame: parent, key: key)
        }
        nextSerial += 1
        frames.append(
            WireDecodingFrame(
                serial: nextSerial, parent: parent, depth: depth, kind: kind, start: start, limit: limit,
                exact: exact, key: key))
        return frames.count - 1
    }

    /// Pops a value's frame (and those of nested containers it opened) and returns where the value ends.
    func finishValue(_ frame: Int, _ serial: Int) throws -> Int {
        try check(frame, serial)
        var end = frames[frame].end
        if end < 0 {
            if frames[frame].exact {
                end = frames[frame].limit
            } else if frames[frame].kind == .value {
                // init(from:) read nothing: skip the keyed container an empty encode(to:) writes.
                do {
                    try openKeyed(frame)
                } catch {
                    throw failure(
                        "init(from:) read nothing and the bytes are not a keyed container to skip: \(error.message)",
                        frame: frame)
                }
                end = frames[frame].end
            } else {
                throw failure(
                    "init(from:) did not decode the whole value, so where it ends is unknown "
                        + "(decode every element of an unkeyed container, and the value of a single value container)",
                    frame: frame)
            }
        }
        frames.removeSubrange(frame...)
        return end
    }

    /// Removes the frames a failed read left behind, so an `init(from:)` that
    /// catches the error can go on.
    func dropFrames(from frame: Int) {
        if frames.count > frame {
            frames.removeSubrange(frame...)
        }
    }

    /// Reads the plain encoding of a value starting at `position`.
    ///
    /// `collapsed` means the caller already read that an `Optional` is present
    /// (a non-empty keyed entry, a value element tag), so no presence byte follows.
    func decodeValue<T: Decodable>(
        _ type: T.Type, at position: inout Int, limit: Int, exact: Bool, parent: Int, key: WirePathComponent,
        collapsed: Bool
    ) throws -> T {
        let value: T
        if WireFormat.isPrimitive(T.self) {
            do {
                value = try reader.primitive(T.self, &position, limit)
            } catch {
                throw failure(error.message, frame: parent, key: key)
            }
        } else if let special = T.self as? any WireSpecialDecodable.Type {
            value = try decodeSpecial(
                special, as: T.self, at: &position, limit: limit, exact: exact, parent: parent, key: key,
                collapsed: collapsed)
        } else {
            value = try decodeComposite(T.self, at: &position, limit: limit, exact: exact, parent: parent, key: key)
        }
        if exact && position != limit {
            throw failure("\(limit - position) unexpected bytes after the value", frame: parent, key: key)
        }
        return value
    }

    private func decodeSpecial<S: WireSpecialDecodable, T>(
        _ special: S.Type, as type: T.Type, at position: inout Int, limit: Int, exact: Bool, parent: Int,
        key: WirePathComponent, collapsed: Bool
    ) throws -> T {
        let value = try S.wireDecode(
            from: self, at: &position, limit: limit, exact: exact, parent: parent, key: key, collapsed: collapsed)
        return unsafeBitCast(value, to: T.self)
    }

    /// Runs a type's own `init(from:)` in a new frame.
    func decodeComposite<T: Decodable>(
        _ type: T.Type, at position: inout Int, limit: Int, exact: Bool, parent: Int, key: WirePathComponent
    ) throws -> T {
        let frame = try pushFrame(.value, parent: parent, key: key, start: position, limit: limit, exact: exact)
        let serial = frames[frame].serial
        do {
            let value = try T(from: WireDecoderImplementation(state: self, frame: frame, serial: serial))
            position = try finishValue(frame, serial)
            return value
        } catch {
            dropFrames(from: frame)
            throw error
        }
    }

    /// The value `Optional` types decode to when they are absent or nil; nil for other types.
    func noneValue<T>(_ type: T.Type) -> T? {
        guard let special = T.self as? any WireSpecialDecodable.Type else {
            return nil
        }
        return noneValue(special, as: T.self)
    }

    private func noneValue<S: WireSpecialDecodable, T>(_ special: S.Type, as type: T.Type) -> T? {
        guard let none = S.wireNone else {
            return nil
        }
        return unsafeBitCast(none, to: T.self)
    }

    /// How many elements a collection claims, refused when the bytes left
    /// cannot hold them.
    private func collectionCount(
        _ position: inout Int, _ limit: Int, _ what: StaticString, bytesEach: Int, parent: Int, key: WirePathComponent
    ) throws -> Int {
        do {
            return try reader.count(&position, limit, what, bytesEach: bytesEach)
        } catch {
            throw failure(error.message, frame: parent, key: key)
        }
    }

    /// Runs `body` with a collection's frame (for coding paths) pushed, and
    /// pops it afterwards, also when `body` throws.
    private func withCollectionFrame(
        parent: Int, key: WirePathComponent, start: Int, limit: Int, _ body: (Int) throws -> Void
    ) throws {
        let frame = try pushFrame(.collection, parent: parent, key: key, start: start, limit: limit, exact: false)
        defer { dropFrames(from: frame) }
        try body(frame)
    }

    /// How many elements to reserve room for: never more memory than the budget.
    private func reservation(_ count: Int, stride: Int) -> Int {
        min(count, WireFormat.reservationBudget / max(stride, 1))
    }

    func decodeArray<E: Decodable>(
        _ type: E.Type, at position: inout Int, limit: Int, parent: Int, key: WirePathComponent
    ) throws -> [E] {
        if WireFormat.isTrivialElement(E.self) {
            return try decodeTrivialArray(E.self, at: &position, limit: limit, parent: parent, key: key)
        }
        let count = try collectionCount(&position, limit, "an array", bytesEach: 1, parent: parent, key: key)
        var array: [E] = []
        guard count > 0 else {
            return array
        }
        array.reserveCapacity(reservation(count, stride: MemoryLayout<E>.stride))
        let composite = !WireFormat.isPrimitive(E.self) && !(E.self is any WireSpecialDecodable.Type)
        try withCollectionFrame(parent: parent, key: key, start: position, limit: limit) { frame in
            for index in 0..<count {
                if composite {
                    array.append(
                        try decodeComposite(
                            E.self, at: &position, limit: limit, exact: false, parent: frame, key: .index(index)))
                } else {
                    array.append(
                        try decodeValue(
                            E.self, at: &position, limit: limit, exact: false, parent: frame, key: .index(index),
                            collapsed: false))
                }
            }
        }
        return array
    }

    /// Copies an array of fixed-width numbers or Bools in one go.
    private func decodeTrivialArray<E>(
        _ type: E.Type, at position: inout Int, limit: Int, parent: Int, key: WirePathComponent
    ) throws -> [E] {
        let stride = MemoryLayout<E>.stride
        let count = try collectionCount(&position, limit, "an array", bytesEach: stride, parent: parent, key: key)
        let byteCount = count * stride
        let source = UnsafeRawBufferPointer(start: reader.base + position, count: byteCount)
        if E.self == Bool.self {
            // Only 0 and 1 are valid Bools; anything else must not be reinterpreted.
            for (index, byte) in source.enumerated() where byte > 1 {
                throw failure("invalid Bool byte \(byte)", frame: parent, key: .index(index))
            }
        }
        let array = [E](unsafeUninitializedCapacity: count) { elements, initialized in
            let destination = UnsafeMutableRawBufferPointer(elements)
            destination.copyMemory(from: source)
            #if !_endian(little)
                for start in Swift.stride(from: 0, to: byteCount, by: stride) {
                    var low = start
                    var high = start + stride - 1
                    while low < high {
                        destination.swapAt(low, high)
                        low += 1
                        high -= 1
                    }
                }
            #endif
            initialized = count
        }
        position += byteCount
        return array
    }

    func decodeSet<E: Decodable>(
        _ type: E.Type, at position: inout Int, limit: Int, parent: Int, key: WirePathComponent
    ) throws -> Set<E> {
        let count = try collectionCount(&position, limit, "a set", bytesEach: 1, parent: parent, key: key)
        var set = Set<E>(minimumCapacity: reservation(count, stride: MemoryLayout<E>.stride))
        guard count > 0 else {
            return set
        }
        try withCollectionFrame(parent: parent, key: key, start: position, limit: limit) { frame in
            for index in 0..<count {
                set.insert(
                    try decodeValue(
                        E.self, at: &position, limit: limit, exact: false, parent: frame, key: .index(index),
                        collapsed: false))
            }
        }
        return set
    }

    func decodeDictionary<K: Decodable, V: Decodable>(
        _ keyType: K.Type, _ valueType: V.Type, at position: inout Int, limit: Int, parent: Int,
        key: WirePathComponent
    ) throws -> [K: V] {
        let count = try collectionCount(&position, limit, "a dictionary", bytesEach: 2, parent: parent, key: key)
        let stride = MemoryLayout<K>.stride + MemoryLayout<V>.stride
        var dictionary = [K: V](minimumCapacity: reservation(count, stride: stride))
        guard count > 0 else {
            return dictionary
        }
        try withCollectionFrame(parent: parent, key: key, start: position, limit: limit) { frame in
            for index in 0..<count {
                let elementKey = try decodeValue(
                    K.self, at: &position, limit: limit, exact: false, parent: frame, key: .index(index),
                    collapsed: false)
                dictionary[elementKey] = try decodeValue(
                    V.self, at: &position, limit: limit, exact: false, parent: frame, key: .index(index),
                    collapsed: false)
            }
        }
        return dictionary
    }

    func openKeyed(_ frame: Int) throws(WireFault) {
        if frames[frame].kind == .keyed {
            return
        }
        let limit = frames[frame].limit
        // An entry takes at least a key index and a length.
        var (count, position) = try containerHeader(
            frame, WireFormat.keyedHeader, "a keyed container", items: "entries", bytesEach: 2)
        let contentStart = position
        for _ in 0..<count {
            let keyIndex = try reader.varint(&position, limit, "a key index")
            guard keyIndex < UInt64(keys.count) else {
                throw WireFault("key index \(keyIndex) is outside the key table of \(keys.count) keys")
            }
            position += try reader.length(&position, limit, "a keyed entry")
        }
        frames[frame].kind = .keyed
        frames[frame].count = count
        frames[frame].contentStart = contentStart
        frames[frame].hintPosition = contentStart
        frames[frame].hintIndex = 0
        frames[frame].end = position
    }

    func openUnkeyed(_ frame: Int) throws(WireFault) {
        if frames[frame].kind == .unkeyed {
            return
        }
        // An element takes at least its tag byte.
        let (count, position) = try containerHeader(
            frame, WireFormat.unkeyedHeader, "an unkeyed container", items: "elements", bytesEach: 1)
        frames[frame].kind = .unkeyed
        frames[frame].count = count
        frames[frame].contentStart = position
        if count == 0 {
            frames[frame].end = position
        }
    }

    /// Reads the header of the container at `frame`'s start: checks its
    /// kind, and that the bytes left can hold its items at `bytesEach` bytes
    /// at least. Returns the item count and where the items start.
    private func containerHeader(
        _ frame: Int, _ kind: UInt64, _ what: String, items: String, bytesEach: Int
    ) throws(WireFault) -> (count: Int, position: Int) {
        var position = frames[frame].start
        let limit = frames[frame].limit
        let header = try reader.varint(&position, limit, "a container header")
        guard header & 3 == kind else {
            throw WireFault("expected \(what), found \(WireFormat.describeHeader(header))")
        }
        guard header >> 2 <= UInt64((limit - position) / bytesEach) else {
            throw WireFault("\(what) claims \(header >> 2) \(items) but only \(limit - position) bytes remain")
        }
        return (Int(header >> 2), position)
    }

    func openSingle(_ frame: Int) throws(WireFault) {
        if frames[frame].kind == .single {
            return
        }
        var position = frames[frame].start
        let header = try reader.varint(&position, frames[frame].limit, "a container header")
        guard header <= 1 else {
            throw WireFault("expected a single value, found \(WireFormat.describeHeader(header))")
        }
        frames[frame].kind = .single
        frames[frame].contentStart = position
        frames[frame].holdsNil = header == 0
        if header == 0 {
            frames[frame].end = position
        }
    }

    /// The index of a key name in the key table, or nil when no entry uses it.
    private func keyIndex(named name: String) -> Int? {
        if keys.count <= 16 {
            return keys.firstIndex(of: name)
        }
        if keyLookup.isEmpty {
            for (index, key) in keys.enumerated().reversed() {
                keyLookup[key] = index
            }
        }
        return keyLookup[name]
    }

    /// Finds the entry for a key in a keyed container, trying the entry after
    /// the last one found before searching.
    ///
    /// - Parameter advance: Whether to move the guess past the found entry.
    func findEntry(frame: Int, serial: Int, name: String, advance: Bool) throws -> Range<Int>? {
        try check(frame, serial)
        let count = frames[frame].count
        let limit = frames[frame].limit
        do {
            let hintIndex = frames[frame].hintIndex
            if hintIndex < count {
                var position = frames[frame].hintPosition
                let keyIndex = try reader.varint(&position, limit, "a key index")
                let length = try reader.length(&position, limit, "a keyed entry")
                if keyIndex < UInt64(keys.count) && keys[Int(keyIndex)] == name {
                    if advance {
                        frames[frame].hintPosition = position + length
                        frames[frame].hintIndex = hintIndex + 1
                    }
                    return position..<(position + length)
                }
            }
            guard let wanted = keyIndex(named: name) else {
                return nil
            }
            var position = frames[frame].contentStart
            for index in 0..<count {
                let keyIndex = try reader.varint(&position, limit, "a key index")
                let length = try reader.length(&position, limit, "a keyed entry")
                if keyIndex == UInt64(wanted) {
                    if advance {
                        frames[frame].hintPosition = position + length
                        frames[frame].hintIndex = index + 1
                    }
                    return position..<(position + length)
                }
                position += length
            }
            return nil
        } catch {
            throw failure(error.message, frame: frame)
        }
    }

    /// The key names of a keyed container's entries, in encoding order.
    func entryNames(frame: Int, serial: Int) throws -> [String] {
        try check(frame, serial)
        var names: [String] = []
        var position = frames[frame].contentStart
        let limit = frames[frame].limit
        do {
            for _ in 0..<frames[frame].count {
                let keyIndex = try reader.varint(&position, limit, "a key index")
                position += try reader.length(&position, limit, "a keyed entry")
                if keyIndex < UInt64(keys.count) {
                    names.append(keys[Int(keyIndex)])
                }
            }
        } catch {
            throw failure(error.message, frame: frame)
        }
        return names
    }

    /// Finds a key's entry, failing when it is missing.
    func requireEntry(frame: Int, serial: Int, key: any CodingKey, advance: Bool = true) throws -> Range<Int> {
        guard let range = try findEntry(frame: frame, serial: serial, name: key.stringValue, advance: advance) else {
            throw failure("key '\(key.stringValue)' not found", frame: frame)
        }
        return range
    }

    /// Reads a primitive that must fill its keyed entry exactly.
    @inline(__always)
    func decodeEntryPrimitive<T>(_ type: T.Type, in range: Range<Int>, frame: Int, key: any CodingKey) throws -> T {
        guard !range.isEmpty else {
            throw failure("expected \(T.self), found nil", frame: frame, key: .key(key))
        }
        var position = range.lowerBound
        do throws(WireFault) {
            let value = try reader.primitive(T.self, &position, range.upperBound)
            guard position == range.upperBound else {
                throw WireFault("\(range.upperBound - position) unexpected bytes after the value")
            }
            return value
        } catch {
            throw failure(error.message, frame: frame, key: .key(key))
        }
    }

    func decodeEntry<T: Decodable>(_ type: T.Type, frame: Int, serial: Int, key: any CodingKey) throws -> T {
        guard let range = try findEntry(frame: frame, serial: serial, name: key.stringValue, advance: true) else {
            if let none = noneValue(T.self) {
                return none
            }
            throw failure("key '\(key.stringValue)' not found", frame: frame)
        }
        guard !range.isEmpty else {
            if let none = noneValue(T.self) {
                return none
            }
            throw failure("expected \(T.self), found nil", frame: frame, key: .key(key))
        }
        var position = range.lowerBound
        return try decodeValue(
            T.self, at: &position, limit: range.upperBound, exact: true, parent: frame, key: .key(key),
            collapsed: true)
    }

    func decodeEntryIfPresent<T: Decodable>(_ type: T.Type, frame: Int, serial: Int, key: any CodingKey) throws
        -> T?
    {
        guard let range = try findEntry(frame: frame, serial: serial, name: key.stringValue, advance: true),
            !range.isEmpty
        else {
            return nil
        }
        // Pairs with `encodeIfPresent`, which keeps the presence byte of an optional `T`.
        var position = range.lowerBound
        return try decodeValue(
            T.self, at: &position, limit: range.upperBound, exact: true, parent: frame, key: .key(key),
            collapsed: false)
    }

    /// Pushes the frame of a nested container or super decoder filling a region.
    func pushNested(parent: Int, key: WirePathComponent, region: Range<Int>) throws -> (frame: Int, serial: Int) {
        let frame = try pushFrame(
            .value, parent: parent, key: key, start: region.lowerBound, limit: region.upperBound, exact: true)
        return (frame, frames[frame].serial)
    }
}

/// The `Decoder` handed to a type's `init(from:)`.
struct WireDecoderImplementation: Decoder {
    let state: WireDecodingState
    let frame: Int
    let serial: Int

    var codingPath: [any CodingKey] { state.codingPath(frame) }
    var userInfo: [CodingUserInfoKey: Any] { state.anyUserInfo }

    func container<Key: CodingKey>(keyedBy type: Key.Type) throws -> KeyedDecodingContainer<Key> {
        try state.check(frame, serial)
        do {
            try state.openKeyed(frame)
        } catch {
            throw state.failure(error.message, frame: frame)
        }
        return KeyedDecodingContainer(WireKeyedDecodingContainer<Key>(state: state, frame: frame, serial: serial))
    }

    func unkeyedContainer() throws -> any UnkeyedDecodingContainer {
        try state.check(frame, serial)
        do {
            try state.openUnkeyed(frame)
        } catch {
            throw state.failure(error.message, frame: frame)
        }
        return WireUnkeyedDecodingContainer(state: state, frame: frame, serial: serial)
    }

    func singleValueContainer() throws -> any SingleValueDecodingContainer {
        try state.check(frame, serial)
        do {
            try state.openSingle(frame)
        } catch {
            throw state.failure(error.message, frame: frame)
        }
        return WireSingleValueDecodingContainer(state: state, frame: frame, serial: serial)
    }
}

struct WireKeyedDecodingContainer<Key: CodingKey>: KeyedDecodingContainerProtocol {
    let state: WireDecodingState
    let frame: Int
    let serial: Int

    var codingPath: [any CodingKey] { state.codingPath(frame) }

    var allKeys: [Key] {
        guard let names = try? state.entryNames(frame: frame, serial: serial) else {
            return []
        }
        return names.compactMap { Key(stringValue: $0) }
    }

    func contains(_ key: Key) -> Bool {
        (try? state.findEntry(frame: frame, serial: serial, name: key.stringValue, advance: false)) != nil
    }

    func decodeNil(forKey key: Key) throws -> Bool {
        let range = try state.requireEntry(frame: frame, serial: serial, key: key, advance: false)
        guard range.isEmpty else {
            return false
        }
        // The caller will not decode this key: move on to the next entry.
        _ = try state.findEntry(frame: frame, serial: serial, name: key.stringValue, advance: true)
        return true
    }

    @inline(__always)
    private func primitive<T>(_ type: T.Type, _ key: Key) throws -> T {
        let range = try state.requireEntry(frame: frame, serial: serial, key: key)
        return try state.decodeEntryPrimitive(T.self, in: range, frame: frame, key: key)
    }

    @inline(__always)
    private func primitiveIfPresent<T>(_ type: T.Type, _ key: Key) throws -> T? {
        guard let range = try state.findEntry(frame: frame, serial: serial, name: key.stringValue, advance: true),
            !range.isEmpty
        else {
            return nil
        }
        return try state.decodeEntryPrimitive(T.self, in: range, frame: frame, key: key)
    }

    func decode(_ type: Bool.Type, forKey key: Key) throws -> Bool { try primitive(type, key) }
    func decode(_ type: String.Type, forKey key: Key) throws -> String { try primitive(type, key) }
    func decode(_ type: Double.Type, forKey key: Key) throws -> Double { try primitive(type, key) }
    func decode(_ type: Float.Type, forKey key: Key) throws -> Float { try primitive(type, key) }
    func decode(_ type: Int.Type, forKey key: Key) throws -> Int { try primitive(type, key) }
    func decode(_ type: Int8.Type, forKey key: Key) throws -> Int8 { try primitive(type, key) }
    func decode(_ type: Int16.Type, forKey key: Key) throws -> Int16 { try primitive(type, key) }
    func decode(_ type: Int32.Type, forKey key: Key) throws -> Int32 { try primitive(type, key) }
    func decode(_ type: Int64.Type, forKey key: Key) throws -> Int64 { try primitive(type, key) }
    func decode(_ type: Int128.Type, forKey key: Key) throws -> Int128 { try primitive(type, key) }
    func decode(_ type: UInt.Type, forKey key: Key) throws -> UInt { try primitive(type, key) }
    func decode(_ type: UInt8.Type, forKey key: Key) throws -> UInt8 { try primitive(type, key) }
    func decode(_ type: UInt16.Type, forKey key: Key) throws -> UInt16 { try primitive(type, key) }
    func decode(_ type: UInt32.Type, forKey key: Key) throws -> UInt32 { try primitive(type, key) }
    func decode(_ type: UInt64.Type, forKey key: Key) throws -> UInt64 { try primitive(type, key) }
    func decode(_ type: UInt128.Type, forKey key: Key) throws -> UInt128 { try primitive(type, key) }

    func decode<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T {
        try state.decodeEntry(T.self, frame: frame, serial: serial, key: key)
    }

    func decodeIfPresent(_ type: Bool.Type, forKey key: Key) throws -> Bool? { try primitiveIfPresent(type, key) }
    func decodeIfPresent(_ type: String.Type, forKey key: Key) throws -> String? {
        try primitiveIfPresent(type, key)
    }
    func decodeIfPresent(_ type: Double.Type, forKey key: Key) throws -> Double? {
        try primitiveIfPresent(type, key)
    }
    func decodeIfPresent(_ type: Float.Type, forKey key: Key) throws -> Float? { try primitiveIfPresent(type, key) }
    func decodeIfPresent(_ type: Int.Type, forKey key: Key) throws -> Int? { try primitiveIfPresent(type, key) }
    func decodeIfPresent(_ type: Int8.Type, forKey key: Key) throws -> Int8? { try primitiveIfPresent(type, key) }
    func decodeIfPresent(_ type: Int16.Type, forKey key: Key) throws -> Int16? { try primitiveIfPresent(type, key) }
    func decodeIfPresent(_ type: Int32.Type, forKey key: Key) throws -> Int32? { try primitiveIfPresent(type, key) }
    func decodeIfPresent(_ type: Int64.Type, forKey key: Key) throws -> Int64? { try primitiveIfPresent(type, key) }
    func decodeIfPresent(_ type: Int128.Type, forKey key: Key) throws -> Int128? {
        try primitiveIfPresent(type, key)
    }
    func decodeIfPresent(_ type: UInt.Type, forKey key: Key) throws -> UInt? { try primitiveIfPresent(type, key) }
    func decodeIfPresent(_ type: UInt8.Type, forKey key: Key) throws -> UInt8? { try primitiveIfPresent(type, key) }
    func decodeIfPresent(_ type: UInt16.Type, forKey key: Key) throws -> UInt16? {
        try primitiveIfPresent(type, key)
    }
    func decodeIfPresent(_ type: UInt32.Type, forKey key: Key) throws -> UInt32? {
        try primitiveIfPresent(type, key)
    }
    func decodeIfPresent(_ type: UInt64.Type, forKey key: Key) throws -> UInt64? {
        try primitiveIfPresent(type, key)
    }
    func decodeIfPresent(_ type: UInt128.Type, forKey key: Key) throws -> UInt128? {
        try primitiveIfPresent(type, key)
    }

    func decodeIfPresent<T: Decodable>(_ type: T.Type, forKey key: Key) throws -> T? {
        try state.decodeEntryIfPresent(T.self, frame: frame, serial: serial, key: key)
    }

    /// Finds the non-nil entry that holds a nested container or super decoder.
    private func nestedRegion(_ key: any CodingKey) throws -> Range<Int> {
        let range = try state.requireEntry(frame: frame, serial: serial, key: key)
        guard !range.isEmpty else {
            throw state.failure("expected a nested value, found nil", frame: frame, key: .key(key))
        }
        return range
    }

    func nestedContainer<NestedKey: CodingKey>(
        keyedBy type: NestedKey.Type, forKey key: Key
    ) throws -> KeyedDecodingContainer<NestedKey> {
        let nested = try state.pushNested(parent: frame, key: .key(key), region: try nestedRegion(key))
        do {
            try state.openKeyed(nested.frame)
        } catch {
            throw state.failure(error.message, frame: nested.frame)
        }
        return KeyedDecodingContainer(
            WireKeyedDecodingContainer<NestedKey>(state: state, frame: nested.frame, serial: nested.serial))
    }

    func nestedUnkeyedContainer(forKey key: Key) throws -> any UnkeyedDecodingContainer {
        let nested = try state.pushNested(parent: frame, key: .key(key), region: try nestedRegion(key))
        do {
            try state.openUnkeyed(nested.frame)
        } catch {
            throw state.failure(error.message, frame: nested.frame)
        }
        return WireUnkeyedDecodingContainer(state: state, frame: nested.frame, serial: nested.serial)
    }

    func superDecoder() throws -> any Decoder {
        let key = WireSuperKey()
        let nested = try state.pushNested(parent: frame, key: .key(key), region: try nestedRegion(key))
        return WireDecoderImplementation(state: state, frame: nested.frame, serial: nested.serial)
    }

    func superDecoder(forKey key: Key) throws -> any Decoder {
        let nested = try state.pushNested(parent: frame, key: .key(key), region: try nestedRegion(key))
        return WireDecoderImplementation(state: state, frame: nested.frame, serial: nested.serial)
    }
}

struct WireUnkeyedDecodingContainer: UnkeyedDecodingContainer {
    let state: WireDecodingState
    let frame: Int
    let serial: Int
    let limit: Int
    let count: Int?
    private(set) var currentIndex = 0
    private var position: Int

    init(state: WireDecodingState, frame: Int, serial: Int) {
        self.state = state
        self.frame = frame
        self.serial = serial
        limit = state.frames[frame].limit
        count = state.frames[frame].count
        position = state.frames[frame].contentStart
    }

    var codingPath: [any CodingKey] { state.codingPath(frame) }

    var isAtEnd: Bool { currentIndex >= count ?? 0 }

    /// Reads the next element's tag: true for a value, false for nil.
    private func peekTag() throws -> Bool {
        try state.check(frame, serial)
        guard !isAtEnd else {
            throw state.failure(
                "no element left: the unkeyed container has \(count ?? 0)", frame: frame, key: .index(currentIndex))
        }
        guard position < limit else {
            throw state.failure("expected an element tag, 0 bytes remain", frame: frame, key: .index(currentIndex))
        }
        switch state.reader.byte(position) {
        case WireFormat.nilMarker: return false
        case WireFormat.valueMarker: return true
        case let tag: throw state.failure("invalid element tag \(tag)", frame: frame, key: .index(currentIndex))
        }
    }

    private mutating func advance() {
        currentIndex += 1
        if currentIndex == count && frame < state.frames.count && state.frames[frame].serial == serial {
            state.frames[frame].end = position
        }
    }

    mutating func decodeNil() throws -> Bool {
        guard try !peekTag() else {
            return false
        }
        position += 1
        advance()
        return true
    }

    private mutating func element<T: Decodable>(_ type: T.Type) throws -> T {
        guard try peekTag() else {
            guard let none = state.noneValue(T.self) else {
                throw state.failure("expected \(T.self), found nil", frame: frame, key: .index(currentIndex))
            }
            position += 1
            advance()
            return none
        }
        position += 1
        let value = try state.decodeValue(
            T.self, at: &position, limit: limit, exact: false, parent: frame, key: .index(currentIndex),
            collapsed: true)
        advance()
        return value
    }

    mutating func decode(_ type: Bool.Type) throws -> Bool { try element(type) }
    mutating func decode(_ type: String.Type) throws -> String { try element(type) }
    mutating func decode(_ type: Double.Type) throws -> Double { try element(type) }
    mutating func decode(_ type: Float.Type) throws -> Float { try element(type) }
    mutating func decode(_ type: Int.Type) throws -> Int { try element(type) }
    mutating func decode(_ type: Int8.Type) throws -> Int8 { try element(type) }
    mutating func decode(_ type: Int16.Type) throws -> Int16 { try element(type) }
    mutating func decode(_ type: Int32.Type) throws -> Int32 { try element(type) }
    mutating func decode(_ type: Int64.Type) throws -> Int64 { try element(type) }
    mutating func decode(_ type: Int128.Type) throws -> Int128 { try element(type) }
    mutating func decode(_ type: UInt.Type) throws -> UInt { try element(type) }
    mutating func decode(_ type: UInt8.Type) throws -> UInt8 { try element(type) }
    mutating func decode(_ type: UInt16.Type) throws -> UInt16 { try element(type) }
    mutating func decode(_ type: UInt32.Type) throws -> UInt32 { try element(type) }
    mutating func decode(_ type: UInt64.Type) throws -> UInt64 { try element(type) }
    mutating func decode(_ type: UInt128.Type) throws -> UInt128 { try element(type) }
    mutating func decode<T: Decodable>(_ type: T.Type) throws -> T { try element(type) }

    /// Reads the tag and length of an element holding a nested container or super decoder.
    private mutating func nestedRegion() throws -> Range<Int> {
        guard try peekTag() else {
            throw state.failure("expected a nested value, found nil", frame: frame, key: .index(currentIndex))
        }
        var cursor = position + 1
        let length: Int
        do {
            length = try state.reader.length(&cursor, limit, "a nested container")
        } catch {
            throw state.failure(error.message, frame: frame, key: .index(currentIndex))
        }
        position = cursor + length
        return cursor..<position
    }

    mutating func nestedContainer<NestedKey: CodingKey>(
        keyedBy type: NestedKey.Type
    ) throws -> KeyedDecodingContainer<NestedKey> {
        let index = currentIndex
        let nested = try state.pushNested(parent: frame, key: .index(index), region: try nestedRegion())
        advance()
        do {
            try state.openKeyed(nested.frame)
        } catch {
            throw state.failure(error.message, frame: nested.frame)
        }
        return KeyedDecodingContainer(
            WireKeyedDecodingContainer<NestedKey>(state: state, frame: nested.frame, serial: nested.serial))
    }

    mutating func nestedUnkeyedContainer() throws -> any UnkeyedDecodingContainer {
        let index = currentIndex
        let nested = try state.pushNested(parent: frame, key: .index(index), region: try nestedRegion())
        advance()
        do {
            try state.openUnkeyed(nested.frame)
        } catch {
            throw state.failure(error.message, frame: nested.frame)
        }
        return WireUnkeyedDecodingContainer(state: state, frame: nested.frame, serial: nested.serial)
    }

    mutating func superDecoder() throws -> any Decoder {
        let index = currentIndex
        let nested = try state.pushNested(parent: frame, key: .index(index), region: try nestedRegion())
        advance()
        return WireDecoderImplementation(state: state, frame: nested.frame, serial: nested.serial)
    }
}

struct WireSingleValueDecodingContainer: SingleValueDecodingContainer {
    let state: WireDecodingState
    let frame: Int
    let serial: Int

    var codingPath: [any CodingKey] { state.codingPath(frame) }

    func decodeNil() -> Bool {
        guard (try? state.check(frame, serial)) != nil else {
            return false
        }
        return state.frames[frame].holdsNil
    }

    private func value<T: Decodable>(_ type: T.Type) throws -> T {
        try state.check(frame, serial)
        guard !state.frames[frame].holdsNil else {
            guard let none = state.noneValue(T.self) else {
                throw state.failure("expected \(T.self), found nil", frame: frame)
            }
            return none
        }
        var position = state.frames[frame].contentStart
        let value = try state.decodeValue(
            T.self, at: &position, limit: state.frames[frame].limit, exact: state.frames[frame].exact,
            parent: frame, key: .none, collapsed: true)
        if frame < state.frames.count && state.frames[frame].serial == serial {
            state.frames[frame].end = position
        }
        return value
    }

    func decode(_ type: Bool.Type) throws -> Bool { try value(type) }
    func decode(_ type: String.Type) throws -> String { try value(type) }
    func decode(_ type: Double.Type) throws -> Double { try value(type) }
    func decode(_ type: Float.Type) throws -> Float { try value(type) }
    func decode(_ type: Int.Type) throws -> Int { try value(type) }
    func decode(_ type: Int8.Type) throws -> Int8 { try value(type) }
    func decode(_ type: Int16.Type) throws -> Int16 { try value(type) }
    func decode(_ type: Int32.Type) throws -> Int32 { try value(type) }
    func decode(_ type: Int64.Type) throws -> Int64 { try value(type) }
    func decode(_ type: Int128.Type) throws -> Int128 { try value(type) }
    func decode(_ type: UInt.Type) throws -> UInt { try value(type) }
    func decode(_ type: UInt8.Type) throws -> UInt8 { try value(type) }
    func decode(_ type: UInt16.Type) throws -> UInt16 { try value(type) }
    func decode(_ type: UInt32.Type) throws -> UInt32 { try value(type) }
    func decode(_ type: UInt64.Type) throws -> UInt64 { try value(type) }
    func decode(_ type: UInt128.Type) throws -> UInt128 { try value(type) }
    func decode<T: Decodable>(_ type: T.Type) throws -> T { try value(type) }
}

/// Types with a decoding of their own instead of their `init(from:)`:
/// `Optional`, `Array`, `Set` and `Dictionary`.
protocol WireSpecialDecodable {
    static func wireDecode(
        from state: WireDecodingState, at position: inout Int, limit: Int, exact: Bool, parent: Int,
        key: WirePathComponent, collapsed: Bool
    ) throws -> Self

    /// What an absent or nil value decodes to: `.some(.none)` for `Optional`, nil for other types.
    static var wireNone: Self? { get }
}

extension WireSpecialDecodable {
    static var wireNone: Self? { nil }
}

extension Optional: WireSpecialDecodable where Wrapped: Decodable {
    static var wireNone: Self? { .some(.none) }

    static func wireDecode(
        from state: WireDecodingState, at position: inout Int, limit: Int, exact: Bool, parent: Int,
        key: WirePathComponent, collapsed: Bool
    ) throws -> Self {
        if !collapsed {
            guard position < limit else {
                throw state.failure("expected 1 byte for an Optional's presence, 0 remain", frame: parent, key: key)
            }
            let marker = state.reader.byte(position)
            position += 1
            switch marker {
            case WireFormat.nilMarker: return .none
            case WireFormat.valueMarker: break
            default: throw state.failure("invalid Optional presence byte \(marker)", frame: parent, key: key)
            }
        }
        return .some(
            try state.decodeValue(
                Wrapped.self, at: &position, limit: limit, exact: exact, parent: parent, key: key, collapsed: false))
    }
}

extension Array: WireSpecialDecodable where Element: Decodable {
    static func wireDecode(
        from state: WireDecodingState, at position: inout Int, limit: Int, exact: Bool, parent: Int,
        key: WirePathComponent, collapsed: Bool
    ) throws -> Self {
        try state.decodeArray(Element.self, at: &position, limit: limit, parent: parent, key: key)
    }
}

extension Set: WireSpecialDecodable where Element: Decodable {
    static func wireDecode(
        from state: WireDecodingState, at position: inout Int, limit: Int, exact: Bool, parent: Int,
        key: WirePathComponent, collapsed: Bool
    ) throws -> Self {
        try state.decodeSet(Element.self, at: &position, limit: limit, parent: parent, key: key)
    }
}

extension Dictionary: WireSpecialDecodable where Key: Decodable, Value: Decodable {
    static func wireDecode(
        from state: WireDecodingState, at position: inout Int, limit: Int, exact: Bool, parent: Int,
        key: WirePathComponent, collapsed: Bool
    ) throws -> Self {
        try state.decodeDictionary(Key.self, Value.self, at: &position, limit: limit, parent: parent, key: key)
    }
}
