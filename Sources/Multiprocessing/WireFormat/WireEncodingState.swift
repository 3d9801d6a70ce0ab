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
        guard let kind = WirePrimitive.of(T.self) else { return false }
        if kind == .string {
            appendString(unsafeBitCast(value, to: String.self))  // T is String
        } else {
            kind.append(value, to: &buffer)
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
        if WirePrimitive.of(E.self)?.isTrivialElement == true {
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
            WirePrimitive.of(C.Element.self) == nil && !(C.Element.self is any WireSpecialEncodable.Type)
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
