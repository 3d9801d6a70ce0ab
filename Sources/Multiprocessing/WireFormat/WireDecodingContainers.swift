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
