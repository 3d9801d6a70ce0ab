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
