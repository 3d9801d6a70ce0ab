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
        guard WirePrimitive.of(Element.self)?.isTrivialElement == true else {
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
