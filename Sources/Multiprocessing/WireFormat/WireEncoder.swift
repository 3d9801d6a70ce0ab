/// Encodes `Encodable` values into the library's compact binary wire format.
///
/// The wire format plays the role pickle plays in Python: it is how task
/// arguments, results and channel messages cross between processes. It is
/// schema-less and carries no type information, so bytes decode only with
/// ``WireDecoder`` into the same type that was encoded. Keys of keyed
/// containers are written once per message in a table and referenced by
/// index, so hand-written `init(from:)` implementations may decode keys in
/// any order, test them with `contains`, and list them with `allKeys`.
///
/// Arrays of fixed-width numbers, `[UInt8]` and `String` are copied in bulk
/// wherever they appear, at the top level or inside other values.
///
/// Values may nest at most 512 levels deep. A nested container or super
/// encoder must be filled before its parent container encodes its next
/// value; using it afterwards throws.
///
/// ```swift
/// let bytes = try WireEncoder().encode(order)
/// let copy = try WireDecoder().decode(Order.self, from: bytes)
/// ```
public struct WireEncoder: Sendable {
    /// Context values visible to `Encodable` implementations through `encoder.userInfo`.
    ///
    /// Values must be `Sendable` so the encoder can be shared between tasks;
    /// `encode(to:)` sees them as `[CodingUserInfoKey: Any]`.
    public var userInfo: [CodingUserInfoKey: any Sendable] = [:]

    /// Creates an encoder with an empty ``userInfo``.
    ///
    /// An encoder holds no state between calls, so one can be reused and shared freely.
    public init() {}

    /// Encodes a value into a new byte array.
    ///
    /// - Parameters:
    ///   - value: The value to encode.
    /// - Returns: The encoded message.
    /// - Throws: ``MultiprocessingError`` with code `encodingFailed` when the
    ///   value cannot be encoded (nesting too deep, a container used after it
    ///   was closed, an `EncodingError` from the value's `encode(to:)`); other
    ///   errors thrown by `encode(to:)` pass through unchanged.
    public func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        var bytes: [UInt8] = []
        try encode(value, into: &bytes)
        return bytes
    }

    /// Appends the encoding of a value to an existing buffer.
    ///
    /// This is the hot path for senders that reuse one buffer per message: it
    /// avoids allocating a new array. On failure the buffer is left as it was.
    ///
    /// - Parameters:
    ///   - value: The value to encode.
    ///   - buffer: The buffer the encoded message is appended to.
    /// - Throws: ``MultiprocessingError`` with code `encodingFailed` when the
    ///   value cannot be encoded; other errors thrown by the value's
    ///   `encode(to:)` pass through unchanged.
    public func encode<T: Encodable>(_ value: T, into buffer: inout [UInt8]) throws {
        if WireFastPath.append(value, to: &buffer) { return }
        let state = WireEncodingState(userInfo: userInfo)
        swap(&state.buffer, &buffer)
        defer { swap(&state.buffer, &buffer) }
        let start = state.buffer.count
        do {
            _ = try state.encodeValue(value, parent: -1, key: .none, collapsingOptional: false)
            if let error = state.deferredError {
                throw error
            }
            state.appendKeyTable()
        } catch {
            state.buffer.removeSubrange(start...)
            throw MultiprocessingError.wireWrappingCodingError(error, .encodingFailed)
        }
    }
}

/// A value or container being written, kept on the encoder's frame stack.
struct WireEncodingFrame: WirePathFrame {
    enum Kind {
        /// A value whose `encode(to:)` has not asked for a container yet.
        case value
        case keyed
        case unkeyed
        case single
        case singleWritten
        /// An array, set or dictionary; only there for coding paths.
        case collection

        var name: String {
            switch self {
            case .value, .collection: return "no container"
            case .keyed: return "a keyed container"
            case .unkeyed: return "an unkeyed container"
            case .single, .singleWritten: return "a single value container"
            }
        }
    }

    var serial: Int
    var parent: Int
    var depth: Int
    var kind: Kind
    /// Where the container header is (or will be) written.
    var start: Int
    var count = 0
    /// Position of the reserved length of the entry holding a nested
    /// container or super encoder that is still open, or -1.
    var openLength = -1
    /// The key index of the previous entry, to guess the next one.
    var lastKey = -1
    var key: WirePathComponent
}

/// The mutable state of one `encode` call, shared by all its containers.
///
/// Only the thread running that call touches it, and no access to a property
/// overlaps another, so the runtime exclusivity checks (a fifth of the time
/// spent on small values) are turned off for the hot properties.
final class WireEncodingState: WireFrameStack {
    static let failureCode = MultiprocessingError.Code.encodingFailed

    @exclusivity(unchecked) var buffer: [UInt8] = []
    @exclusivity(unchecked) var frames: [WireEncodingFrame] = []
    @exclusivity(unchecked) var keys: [String] = []
    var keyIndexes: [String: Int] = [:]
    var nextSerial = 0
    /// An error found where the `Encoder` protocol cannot throw (asking for a
    /// container); thrown by the next write and at the end.
    @exclusivity(unchecked) var deferredError: MultiprocessingError?
    let userInfo: [CodingUserInfoKey: any Sendable]
    /// `userInfo` as `Codable` hands it out, converted on first use.
    lazy var anyUserInfo: [CodingUserInfoKey: Any] = userInfo.mapValues { $0 as Any }

    init(userInfo: [CodingUserInfoKey: any Sendable]) {
        self.userInfo = userInfo
    }

    @inline(__always)
    func appendVarint(_ value: UInt64) {
        WireFormat.appendVarint(value, to: &buffer)
    }

    @inline(__always)
    func appendVarint(_ value: Int) {
        appendVarint(UInt64(value))
    }

    @inline(__always)
    func appendFixed<T: FixedWidthInteger>(_ value: T) {
        withUnsafeBytes(of: value.littleEndian) { buffer.append(contentsOf: $0) }
    }

    func appendString(_ string: String) {
        var string = string
        string.withUTF8 { utf8 in
            appendVarint(utf8.count)
            buffer.append(contentsOf: UnsafeRawBufferPointer(utf8))
        }
    }

    /// Writes a length counted from just after `position`, where one byte was
    /// reserved; longer lengths shift the bytes after the reservation.
    func patchLength(at position: Int) {
        patchVarint(UInt64(buffer.count - position - 1), at: position)
    }

    func patchVarint(_ value: UInt64, at position: Int) {
        if value < 0x80 {
            buffer[position] = UInt8(truncatingIfNeeded: value)
            return
        }
        var bytes: [UInt8] = []
        var value = value
        while value >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        bytes.append(UInt8(truncatingIfNeeded: value))
        buffer[position] = bytes[0]
        buffer.insert(contentsOf: bytes[1...], at: position + 1)
    }

    /// Appends the key table and its backwards-readable length.
    func appendKeyTable() {
        let tableStart = buffer.count
        if !keys.isEmpty {
            appendVarint(keys.count)
            for key in keys {
                appendString(key)
            }
        }
        // Highest 7 bits first; every byte but the first has its high bit set,
        // meaning "more bytes precede" to a reader going backwards.
        let length = UInt64(buffer.count - tableStart)
        let size = WireFormat.varintSize(length)
        for group in stride(from: size - 1, through: 0, by: -1) {
            let bits = UInt8(truncatingIfNeeded: length >> UInt64(7 * group)) & 0x7f
            buffer.append(group == size - 1 ? bits : bits | 0x80)
        }
    }

    /// The index of a key in the message's key table, adding it when new.
    func keyIndex(_ name: String, frame: Int) -> Int {
        // Fields are usually encoded in the same order every time, so the key
        // after the previous one is the first guess.
        let guess = frames[frame].lastKey + 1
        if guess < keys.count && keys[guess] == name {
            frames[frame].lastKey = guess
            return guess
        }
        let index: Int
        if keys.count <= 16 {
            index = keys.firstIndex(of: name) ?? addKey(name)
        } else {
            if keyIndexes.isEmpty {
                for (index, key) in keys.enumerated() {
                    keyIndexes[key] = index
                }
            }
            index = keyIndexes[name] ?? addKey(name)
        }
        frames[frame].lastKey = index
        return index
    }

    private func addKey(_ name: String) -> Int {
        let index = keys.count
        if index == 0 {
            keys.reserveCapacity(8)
        }
        keys.append(name)
        // The dictionary exists once the table outgrew a linear search.
        if !keyIndexes.isEmpty {
            keyIndexes[name] = index
        }
        return index
    }

    func pushFrame(_ kind: WireEncodingFrame.Kind, parent: Int, key: WirePathComponent) throws -> Int {
        let depth = parent >= 0 ? frames[parent].depth + 1 : 1
        guard depth <= WireFormat.maxDepth else {
            throw failure("values nest deeper than \(WireFormat.maxDepth) levels", frame: parent, key: key)
        }
        nextSerial += 1
        frames.append(
            WireEncodingFrame(
                serial: nextSerial, parent: parent, depth: depth, kind: kind, start: buffer.count, key: key))
        return frames.count - 1
    }

    /// Makes a container's frame the innermost open one before it writes,
    /// closing nested containers it opened earlier.
    @inline(__always)
    func activate(_ frame: Int, _ serial: Int) throws {
        if frame != frames.count - 1 || frames[frame].serial != serial || frames[frame].openLength >= 0
            || deferredError != nil
        {
            try activateSlowly(frame, serial)
        }
    }

    private func activateSlowly(_ frame: Int, _ serial: Int) throws {
        if let deferredError {
            throw deferredError
        }
        guard frame >= 0 && frame < frames.count && frames[frame].serial == serial else {
            throw MultiprocessingError(
                .encodingFailed,
                "a container or encoder was used after the value it belongs to was finished, "
                    + "or after its parent container encoded another value")
        }
        while frames.count - 1 > frame {
            try finishFrame(frames.count - 1)
        }
        if frames[frame].openLength >= 0 {
            patchLength(at: frames[frame].openLength)
            frames[frame].openLength = -1
        }
    }

    /// Completes the header of the innermost frame and removes it.
    func finishFrame(_ frame: Int) throws {
        if frames[frame].openLength >= 0 {
            patchLength(at: frames[frame].openLength)
        }
        let current = frames[frame]
        switch current.kind {
        case .value:
            // A value that asked for no container reads back as an empty keyed container.
            appendVarint(WireFormat.keyedHeader)
        case .keyed:
            patchVarint(UInt64(current.count) << 2 | WireFormat.keyedHeader, at: current.start)
        case .unkeyed:
            patchVarint(UInt64(current.count) << 2 | WireFormat.unkeyedHeader, at: current.start)
        case .single:
            throw failure("a single value container was requested but no value was encoded", frame: frame)
        case .singleWritten, .collection:
            break
        }
        frames.removeLast()
    }

    /// Undoes a write that failed, so an `encode(to:)` that catches the error
    /// can go on with a consistent buffer.
    func rollBack(frame: Int, to mark: Int) {
        if frames.count > frame + 1 {
            frames.removeSubrange((frame + 1)...)
        }
        if buffer.count > mark {
            buffer.removeSubrange(mark...)
        }
    }

    func openContainer(_ kind: WireEncodingFrame.Kind, frame: Int, serial: Int) {
        do {
            try activate(frame, serial)
            switch (frames[frame].kind, kind) {
            case (.value, .keyed):
                frames[frame].start = buffer.count
                appendVarint(WireFormat.keyedHeader)
                frames[frame].kind = .keyed
            case (.value, .unkeyed):
                frames[frame].start = buffer.count
                appendVarint(WireFormat.unkeyedHeader)
                frames[frame].kind = .unkeyed
            case (.value, .single):
                frames[frame].start = buffer.count
                frames[frame].kind = .single
            case (.keyed, .keyed), (.unkeyed, .unkeyed), (.single, .single), (.singleWritten, .single):
                break
            default:
                throw failure(
                    "encode(to:) asked for \(kind.name) after \(frames[frame].kind.name)", frame: frame)
            }
        } catch {
            recordDeferred(error)
        }
    }

    func recordDeferred(_ error: any Error) {
        if deferredError == nil {
            deferredError =
                error as? MultiprocessingError ?? MultiprocessingError(.encodingFailed, "\(error)")
        }
    }

    /// Writes the plain encoding of a value.
    ///
    /// With `collapsingOptional`, an `Optional` writes no presence byte: the
    /// caller marks nil itself (length 0 or a nil element tag) when this
    /// returns `false`.
    @discardableResult
    func encodeValue<T: Encodable>(
        _ value: T, parent: Int, key: WirePathComponent, collapsingOptional: Bool
    ) throws -> Bool {
        if encodePrimitive(value) {
            return true
        }
        if let special = value as? any WireSpecialEncodable {
            return try special.wireEncode(to: self, parent: parent, key: key, collapsingOptional: collapsingOptional)
        }
        try encodeComposite(value, parent: parent, key: key)
        return true
    }

    /// Runs a value's own `encode(to:)` in a new frame.
    func encodeComposite<T: Encodable>(_ value: T, parent: Int, key: WirePathComponent) throws {
        let frame = try pushFrame(.value, parent: parent, key: key)
        let serial = frames[frame].serial
        try value.encode(to: WireEncoderImplementation(state: self, frame: frame, serial: serial))
        try activate(frame, serial)
        try finishFrame(frame)
    }

    @inline(__always)
    func encodePrimitive<T>(_ value: T) -> Bool {
        if T.self == String.self {
            appendString(unsafeBitCast(value, to: String.self))
        } else if T.self == Int.self {
            appendVarint(WireFormat.zigzag(Int64(unsafeBitCast(value, to: Int.self))))
        } else if T.self == Double.self {
            appendFixed(unsafeBitCast(value, to: Double.self).bitPattern)
        } else if T.self == Bool.self {
            buffer.append(unsafeBitCast(value, to: Bool.self) ? 1 : 0)
        } else if T.self == Int64.self {
            appendVarint(WireFormat.zigzag(unsafeBitCast(value, to: Int64.self)))
        } else if T.self == UInt64.self {
            appendVarint(unsafeBitCast(value, to: UInt64.self))
        } else if T.self == Int32.self {
            appendVarint(WireFormat.zigzag(Int64(unsafeBitCast(value, to: Int32.self))))
        } else if T.self == UInt32.self {
            appendVarint(UInt64(unsafeBitCast(value, to: UInt32.self)))
        } else if T.self == UInt8.self {
            buffer.append(unsafeBitCast(value, to: UInt8.self))
        } else if T.self == Int8.self {
            buffer.append(UInt8(bitPattern: unsafeBitCast(value, to: Int8.self)))
        } else if T.self == Int16.self {
            appendVarint(WireFormat.zigzag(Int64(unsafeBitCast(value, to: Int16.self))))
        } else if T.self == UInt16.self {
            appendVarint(UInt64(unsafeBitCast(value, to: UInt16.self)))
        } else if T.self == UInt.self {
            appendVarint(UInt64(unsafeBitCast(value, to: UInt.self)))
        } else if T.self == Float.self {
            appendFixed(unsafeBitCast(value, to: Float.self).bitPattern)
        } else if T.self == Int128.self {
            appendFixed(unsafeBitCast(value, to: Int128.self))
        } else if T.self == UInt128.self {
            appendFixed(unsafeBitCast(value, to: UInt128.self))
        } else {
            return false
        }
        return true
    }

    /// Writes `count` followed by the raw little-endian bytes of the elements.
    private func appendTrivialArray<E>(_ array: [E]) {
        appendVarint(array.count)
        #if _endian(little)
            array.withUnsafeBytes { buffer.append(contentsOf: $0) }
        #else
            for element in array {
                withUnsafeBytes(of: element) { buffer.append(contentsOf: $0.reversed()) }
            }
        #endif
    }

    func encodeArray<E: Encodable>(_ array: [E], parent: Int, key: WirePathComponent) throws {
        if WireFormat.isTrivialElement(E.self) {
            appendTrivialArray(array)
            return
        }
        appendVarint(array.count)
        try encodeElements(array, parent: parent, key: key)
    }

    /// Encodes the elements of a collection one by one, each with its index in the coding path.
    func encodeElements<C: Collection>(_ elements: C, parent: Int, key: WirePathComponent) throws
    where C.Element: Encodable {
        guard !elements.isEmpty else {
            return
        }
        let frame = try pushFrame(.collection, parent: parent, key: key)
        let serial = frames[frame].serial
        var index = 0
        // Elements that are neither primitive nor special go straight to their
        // own encode(to:), sparing a type check and a dynamic cast per element.
        let composite =
            !WireFormat.isPrimitive(C.Element.self) && !(C.Element.self is any WireSpecialEncodable.Type)
        for element in elements {
            if composite {
                try encodeComposite(element, parent: frame, key: .index(index))
            } else {
                try encodeValue(element, parent: frame, key: .index(index), collapsingOptional: false)
            }
            index += 1
        }
        try activate(frame, serial)
        frames.removeLast()
    }

    func encodeDictionary<K: Encodable, V: Encodable>(_ dictionary: [K: V], parent: Int, key: WirePathComponent)
        throws
    {
        appendVarint(dictionary.count)
        guard !dictionary.isEmpty else {
            return
        }
        let frame = try pushFrame(.collection, parent: parent, key: key)
        let serial = frames[frame].serial
        var index = 0
        for (elementKey, elementValue) in dictionary {
            try encodeValue(elementKey, parent: frame, key: .index(index), collapsingOptional: false)
            try encodeValue(elementValue, parent: frame, key: .index(index), collapsingOptional: false)
            index += 1
        }
        try activate(frame, serial)
        frames.removeLast()
    }

    /// Writes a keyed entry whose value has a known length.
    @inline(__always)
    func beginEntry(frame: Int, name: String, length: Int) {
        appendVarint(keyIndex(name, frame: frame))
        appendVarint(length)
        frames[frame].count += 1
    }

    /// Writes a keyed entry; with `collapsingOptional`, a nil optional is an empty entry.
    func encodeEntry<T: Encodable>(_ value: T, frame: Int, key: any CodingKey, collapsingOptional: Bool) throws {
        let mark = buffer.count
        appendVarint(keyIndex(key.stringValue, frame: frame))
        do {
            let special = value as? any WireSpecialEncodable
            if let special, let size = special.wireEncodedSize {
                // Writing the length first spares moving a large array to widen it.
                appendVarint(size)
                _ = try special.wireEncode(to: self, parent: frame, key: .key(key), collapsingOptional: false)
            } else {
                let lengthPosition = buffer.count
                buffer.append(0)
                let present: Bool
                if let special {
                    present = try special.wireEncode(
                        to: self, parent: frame, key: .key(key), collapsingOptional: collapsingOptional)
                } else if encodePrimitive(value) {
                    present = true
                } else {
                    try encodeComposite(value, parent: frame, key: .key(key))
                    present = true
                }
                if present {
                    patchLength(at: lengthPosition)
                }
            }
        } catch {
            rollBack(frame: frame, to: mark)
            throw error
        }
        frames[frame].count += 1
    }

    /// Writes an element of an unkeyed container or the value of a single value container.
    func encodeTagged<T: Encodable>(_ value: T, frame: Int, key: WirePathComponent) throws {
        let mark = buffer.count
        buffer.append(WireFormat.valueMarker)
        do {
            if try !encodeValue(value, parent: frame, key: key, collapsingOptional: true) {
                buffer[mark] = WireFormat.nilMarker
            }
        } catch {
            rollBack(frame: frame, to: mark)
            throw error
        }
    }

    /// Starts an entry or element that holds a nested container or super
    /// encoder, which stays open until the parent writes again or finishes.
    func openNested(
        _ kind: WireEncodingFrame.Kind, frame: Int, serial: Int, key: WirePathComponent
    ) -> (frame: Int, serial: Int) {
        do {
            try activate(frame, serial)
            if case .key(let codingKey) = key {
                appendVarint(keyIndex(codingKey.stringValue, frame: frame))
            } else {
                buffer.append(WireFormat.valueMarker)
            }
            frames[frame].openLength = buffer.count
            buffer.append(0)
            frames[frame].count += 1
            let nested = try pushFrame(kind, parent: frame, key: key)
            switch kind {
            case .keyed: appendVarint(WireFormat.keyedHeader)
            case .unkeyed: appendVarint(WireFormat.unkeyedHeader)
            default: break
            }
            return (nested, frames[nested].serial)
        } catch {
            recordDeferred(error)
            return (-1, -1)
        }
    }
}

/// The `Encoder` handed to a value's `encode(to:)`.
struct WireEncoderImplementation: Encoder {
    let state: WireEncodingState
    let frame: Int
    let serial: Int

    var codingPath: [any CodingKey] { state.codingPath(frame) }
    var userInfo: [CodingUserInfoKey: Any] { state.anyUserInfo }

    func container<Key: CodingKey>(keyedBy type: Key.Type) -> KeyedEncodingContainer<Key> {
        state.openContainer(.keyed, frame: frame, serial: serial)
        return KeyedEncodingContainer(WireKeyedEncodingContainer<Key>(state: state, frame: frame, serial: serial))
    }

    func unkeyedContainer() -> any UnkeyedEncodingContainer {
        state.openContainer(.unkeyed, frame: frame, serial: serial)
        return WireUnkeyedEncodingContainer(state: state, frame: frame, serial: serial)
    }

    func singleValueContainer() -> any SingleValueEncodingContainer {
        state.openContainer(.single, frame: frame, serial: serial)
        return WireSingleValueEncodingContainer(state: state, frame: frame, serial: serial)
    }
}

struct WireKeyedEncodingContainer<Key: CodingKey>: KeyedEncodingContainerProtocol {
    let state: WireEncodingState
    let frame: Int
    let serial: Int

    var codingPath: [any CodingKey] { state.codingPath(frame) }

    mutating func encodeNil(forKey key: Key) throws {
        try state.activate(frame, serial)
        state.beginEntry(frame: frame, name: key.stringValue, length: 0)
    }

    mutating func encode(_ value: Bool, forKey key: Key) throws {
        try state.activate(frame, serial)
        state.beginEntry(frame: frame, name: key.stringValue, length: 1)
        state.buffer.append(value ? 1 : 0)
    }

    mutating func encode(_ value: String, forKey key: Key) throws {
        try state.activate(frame, serial)
        let count = value.utf8.count
        state.beginEntry(frame: frame, name: key.stringValue, length: WireFormat.varintSize(UInt64(count)) + count)
        state.appendString(value)
    }

    mutating func encode(_ value: Double, forKey key: Key) throws {
        try state.activate(frame, serial)
        state.beginEntry(frame: frame, name: key.stringValue, length: 8)
        state.appendFixed(value.bitPattern)
    }

    mutating func encode(_ value: Float, forKey key: Key) throws {
        try state.activate(frame, serial)
        state.beginEntry(frame: frame, name: key.stringValue, length: 4)
        state.appendFixed(value.bitPattern)
    }

    private mutating func encodeVarint(_ value: UInt64, forKey key: Key) throws {
        try state.activate(frame, serial)
        state.beginEntry(frame: frame, name: key.stringValue, length: WireFormat.varintSize(value))
        state.appendVarint(value)
    }

    mutating func encode(_ value: Int, forKey key: Key) throws {
        try encodeVarint(WireFormat.zigzag(Int64(value)), forKey: key)
    }

    mutating func encode(_ value: Int8, forKey key: Key) throws {
        try state.activate(frame, serial)
        state.beginEntry(frame: frame, name: key.stringValue, length: 1)
        state.buffer.append(UInt8(bitPattern: value))
    }

    mutating func encode(_ value: Int16, forKey key: Key) throws {
        try encodeVarint(WireFormat.zigzag(Int64(value)), forKey: key)
    }

    mutating func encode(_ value: Int32, forKey key: Key) throws {
        try encodeVarint(WireFormat.zigzag(Int64(value)), forKey: key)
    }

    mutating func encode(_ value: Int64, forKey key: Key) throws {
        try encodeVarint(WireFormat.zigzag(value), forKey: key)
    }

    mutating func encode(_ value: Int128, forKey key: Key) throws {
        try state.activate(frame, serial)
        state.beginEntry(frame: frame, name: key.stringValue, length: 16)
        state.appendFixed(value)
    }

    mutating func encode(_ value: UInt, forKey key: Key) throws {
        try encodeVarint(UInt64(value), forKey: key)
    }

    mutating func encode(_ value: UInt8, forKey key: Key) throws {
        try state.activate(frame, serial)
        state.beginEntry(frame: frame, name: key.stringValue, length: 1)
        state.buffer.append(value)
    }

    mutating func encode(_ value: UInt16, forKey key: Key) throws {
        try encodeVarint(UInt64(value), forKey: key)
    }

    mutating func encode(_ value: UInt32, forKey key: Key) throws {
        try encodeVarint(UInt64(value), forKey: key)
    }

    mutating func encode(_ value: UInt64, forKey key: Key) throws {
        try encodeVarint(value, forKey: key)
    }

    mutating func encode(_ value: UInt128, forKey key: Key) throws {
        try state.activate(frame, serial)
        state.beginEntry(frame: frame, name: key.stringValue, length: 16)
        state.appendFixed(value)
    }

    mutating func encode<T: Encodable>(_ value: T, forKey key: Key) throws {
        try state.activate(frame, serial)
        try state.encodeEntry(value, frame: frame, key: key, collapsingOptional: true)
    }

    // A missing entry already says nil, so a present `T` that is itself an
    // optional keeps its presence byte: `Int??.some(nil)` survives.
    mutating func encodeIfPresent<T: Encodable>(_ value: T?, forKey key: Key) throws {
        guard let value else {
            return
        }
        try state.activate(frame, serial)
        try state.encodeEntry(value, frame: frame, key: key, collapsingOptional: false)
    }

    mutating func nestedContainer<NestedKey: CodingKey>(
        keyedBy keyType: NestedKey.Type, forKey key: Key
    ) -> KeyedEncodingContainer<NestedKey> {
        let nested = state.openNested(.keyed, frame: frame, serial: serial, key: .key(key))
        return KeyedEncodingContainer(
            WireKeyedEncodingContainer<NestedKey>(state: state, frame: nested.frame, serial: nested.serial))
    }

    mutating func nestedUnkeyedContainer(forKey key: Key) -> any UnkeyedEncodingContainer {
        let nested = state.openNested(.unkeyed, frame: frame, serial: serial, key: .key(key))
        return WireUnkeyedEncodingContainer(state: state, frame: nested.frame, serial: nested.serial)
    }

    mutating func superEncoder() -> any Encoder {
        let nested = state.openNested(.value, frame: frame, serial: serial, key: .key(WireSuperKey()))
        return WireEncoderImplementation(state: state, frame: nested.frame, serial: nested.serial)
    }

    mutating func superEncoder(forKey key: Key) -> any Encoder {
        let nested = state.openNested(.value, frame: frame, serial: serial, key: .key(key))
        return WireEncoderImplementation(state: state, frame: nested.frame, serial: nested.serial)
    }
}

struct WireUnkeyedEncodingContainer: UnkeyedEncodingContainer {
    let state: WireEncodingState
    let frame: Int
    let serial: Int

    var codingPath: [any CodingKey] { state.codingPath(frame) }

    var count: Int {
        frame >= 0 && frame < state.frames.count && state.frames[frame].serial == serial
            ? state.frames[frame].count : 0
    }

    mutating func encodeNil() throws {
        try state.activate(frame, serial)
        state.buffer.append(WireFormat.nilMarker)
        state.frames[frame].count += 1
    }

    mutating func encode<T: Encodable>(_ value: T) throws {
        try state.activate(frame, serial)
        try state.encodeTagged(value, frame: frame, key: .index(state.frames[frame].count))
        state.frames[frame].count += 1
    }

    mutating func nestedContainer<NestedKey: CodingKey>(
        keyedBy keyType: NestedKey.Type
    ) -> KeyedEncodingContainer<NestedKey> {
        let nested = state.openNested(.keyed, frame: frame, serial: serial, key: .index(count))
        return KeyedEncodingContainer(
            WireKeyedEncodingContainer<NestedKey>(state: state, frame: nested.frame, serial: nested.serial))
    }

    mutating func nestedUnkeyedContainer() -> any UnkeyedEncodingContainer {
        let nested = state.openNested(.unkeyed, frame: frame, serial: serial, key: .index(count))
        return WireUnkeyedEncodingContainer(state: state, frame: nested.frame, serial: nested.serial)
    }

    mutating func superEncoder() -> any Encoder {
        let nested = state.openNested(.value, frame: frame, serial: serial, key: .index(count))
        return WireEncoderImplementation(state: state, frame: nested.frame, serial: nested.serial)
    }
}

struct WireSingleValueEncodingContainer: SingleValueEncodingContainer {
    let state: WireEncodingState
    let frame: Int
    let serial: Int

    var codingPath: [any CodingKey] { state.codingPath(frame) }

    /// Checks that this is the first value, as a single value container holds one.
    private func begin() throws {
        try state.activate(frame, serial)
        guard state.frames[frame].kind == .single else {
            throw state.failure("a single value container was given a second value", frame: frame)
        }
        state.frames[frame].kind = .singleWritten
    }

    mutating func encodeNil() throws {
        try begin()
        state.buffer.append(WireFormat.nilMarker)
    }

    mutating func encode<T: Encodable>(_ value: T) throws {
        try begin()
        do {
            try state.encodeTagged(value, frame: frame, key: .none)
        } catch {
            if frame < state.frames.count && state.frames[frame].serial == serial {
                state.frames[frame].kind = .single
            }
            throw error
        }
    }
}

/// Types with an encoding of their own instead of their `encode(to:)`:
/// `Optional`, `Array`, `Set` and `Dictionary`.
protocol WireSpecialEncodable {
    /// Writes the plain encoding; returns `false` for a nil optional when
    /// `collapsingOptional` asked the caller to mark nil instead.
    func wireEncode(
        to state: WireEncodingState, parent: Int, key: WirePathComponent, collapsingOptional: Bool
    ) throws -> Bool

    /// The byte count of the plain encoding when it is known without encoding.
    var wireEncodedSize: Int? { get }
}

extension WireSpecialEncodable {
    var wireEncodedSize: Int? { nil }
}

extension Optional: WireSpecialEncodable where Wrapped: Encodable {
    func wireEncode(
        to state: WireEncodingState, parent: Int, key: WirePathComponent, collapsingOptional: Bool
    ) throws -> Bool {
        guard case .some(let wrapped) = self else {
            if !collapsingOptional {
                state.buffer.append(WireFormat.nilMarker)
            }
            return collapsingOptional ? false : true
        }
        if !collapsingOptional {
            state.buffer.append(WireFormat.valueMarker)
        }
        try state.encodeValue(wrapped, parent: parent, key: key, collapsingOptional: false)
        return true
    }
}

extension Array: WireSpecialEncodable where Element: Encodable {
    var wireEncodedSize: Int? {
        guard WireFormat.isTrivialElement(Element.self) else {
            return nil
        }
        return WireFormat.varintSize(UInt64(count)) + count * MemoryLayout<Element>.stride
    }

    func wireEncode(
        to state: WireEncodingState, parent: Int, key: WirePathComponent, collapsingOptional: Bool
    ) throws -> Bool {
        try state.encodeArray(self, parent: parent, key: key)
        return true
    }
}

extension Set: WireSpecialEncodable where Element: Encodable {
    func wireEncode(
        to state: WireEncodingState, parent: Int, key: WirePathComponent, collapsingOptional: Bool
    ) throws -> Bool {
        state.appendVarint(count)
        try state.encodeElements(self, parent: parent, key: key)
        return true
    }
}

extension Dictionary: WireSpecialEncodable where Key: Encodable, Value: Encodable {
    func wireEncode(
        to state: WireEncodingState, parent: Int, key: WirePathComponent, collapsingOptional: Bool
    ) throws -> Bool {
        try state.encodeDictionary(self, parent: parent, key: key)
        return true
    }
}
