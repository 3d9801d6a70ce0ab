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
        if let kind = WirePrimitive.of(T.self) {
            do {
                value = try reader.primitive(T.self, kind, &position, limit)
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
        if WirePrimitive.of(E.self)?.isTrivialElement == true {
            return try decodeTrivialArray(E.self, at: &position, limit: limit, parent: parent, key: key)
        }
        let count = try collectionCount(&position, limit, "an array", bytesEach: 1, parent: parent, key: key)
        var array: [E] = []
        guard count > 0 else {
            return array
        }
        array.reserveCapacity(reservation(count, stride: MemoryLayout<E>.stride))
        let composite = WirePrimitive.of(E.self) == nil && !(E.self is any WireSpecialDecodable.Type)
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
            let value = try reader.primitive(T.self, WirePrimitive.of(T.self)!, &position, range.upperBound)
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
