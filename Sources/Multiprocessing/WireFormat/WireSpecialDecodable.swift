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
