import Testing

@testable import Multiprocessing

// Helper types are internal and prefixed `WireTest` so they cannot clash with
// other test files or with the library's own `Wire` types.

struct WireTestPoint: Codable, Hashable {
    var x: Double
    var y: Double
}

struct WireTestItem: Codable, Equatable {
    var name: String
    var price: Double
    var quantity: Int
    var tags: [String]
    var discount: Double?
}

enum WireTestShape: Codable, Equatable {
    case circle(center: WireTestPoint, radius: Double)
    case polygon([WireTestPoint])
    case labelled(String, Int)
    case empty
}

enum WireTestColor: String, Codable {
    case red, green, blue
}

struct WireTestOrder: Codable, Equatable {
    var id: UInt64
    var customer: String
    var items: [WireTestItem]
    var shape: WireTestShape
    var color: WireTestColor
    var note: String?
    var nested: Int??
    var counts: [String: Int]
    var names: [Int: String]
    var flags: Set<String>
    var samples: [Double]
    var raw: [UInt8]
    var maybeItems: [WireTestItem?]

    static let example = WireTestOrder(
        id: 42, customer: "Zoë Ångström 🚀",
        items: [
            WireTestItem(name: "apple", price: 0.5, quantity: 3, tags: ["fruit", "red"], discount: nil),
            WireTestItem(name: "pear", price: 0.75, quantity: -2, tags: [], discount: 0.1),
        ],
        shape: .circle(center: WireTestPoint(x: 1, y: -2), radius: 3.5), color: .green, note: nil,
        nested: .some(nil), counts: ["a": 1, "b": -7], names: [1: "one", -5: "minus five"],
        flags: ["x", "y"], samples: [1.5, -2.25, .infinity], raw: [0, 1, 255],
        maybeItems: [nil, WireTestItem(name: "fig", price: 2, quantity: 1, tags: ["dried"], discount: nil)])
}

struct WireTestSamples: Codable, Equatable {
    var label: String
    var samples: [Double]
    var counts: [Int32]
}

struct WireTestAllIntegers: Codable, Equatable {
    var i8: Int8
    var i16: Int16
    var i32: Int32
    var i64: Int64
    var i: Int
    var i128: Int128
    var u8: UInt8
    var u16: UInt16
    var u32: UInt32
    var u64: UInt64
    var u: UInt
    var u128: UInt128

    static let minimum = WireTestAllIntegers(
        i8: .min, i16: .min, i32: .min, i64: .min, i: .min, i128: .min, u8: .min, u16: .min, u32: .min,
        u64: .min, u: .min, u128: .min)
    static let maximum = WireTestAllIntegers(
        i8: .max, i16: .max, i32: .max, i64: .max, i: .max, i128: .max, u8: .max, u16: .max, u32: .max,
        u64: .max, u: .max, u128: .max)
}

class WireTestAnimal: Codable {
    var name: String

    init(name: String) {
        self.name = name
    }
}

final class WireTestDog: WireTestAnimal {
    var goodBoy: Bool

    init(name: String, goodBoy: Bool) {
        self.goodBoy = goodBoy
        super.init(name: name)
    }

    enum CodingKeys: String, CodingKey {
        case goodBoy
    }

    required init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        goodBoy = try container.decode(Bool.self, forKey: .goodBoy)
        try super.init(from: container.superDecoder())
    }

    override func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(goodBoy, forKey: .goodBoy)
        try super.encode(to: container.superEncoder())
    }
}

/// Decodes its keys in another order than it encodes them and uses `contains`, `allKeys` and nil.
struct WireTestHandWritten: Codable, Equatable {
    var a: Int
    var b: String
    var c: Double?
    var d: [Int?]
    var e: Int?

    enum CodingKeys: String, CodingKey {
        case a, b, c, d, e, extra
    }

    init(a: Int, b: String, c: Double?, d: [Int?], e: Int?) {
        self.a = a
        self.b = b
        self.c = c
        self.d = d
        self.e = e
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(a, forKey: .a)
        try container.encode(b, forKey: .b)
        if let c {
            try container.encode(c, forKey: .c)
        } else {
            try container.encodeNil(forKey: .c)
        }
        var list = container.nestedUnkeyedContainer(forKey: .d)
        for element in d {
            if let element {
                try list.encode(element)
            } else {
                try list.encodeNil()
            }
        }
        // A plain `encode` of an optional, decoded below with `decodeIfPresent`.
        try container.encode(e, forKey: .e)
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        guard Set(container.allKeys.map(\.stringValue)) == ["a", "b", "c", "d", "e"] else {
            throw DecodingError.dataCorrupted(.init(codingPath: container.codingPath, debugDescription: "keys"))
        }
        guard !container.contains(.extra) && container.contains(.a) else {
            throw DecodingError.dataCorrupted(.init(codingPath: container.codingPath, debugDescription: "contains"))
        }
        e = try container.decodeIfPresent(Int.self, forKey: .e)
        var list = try container.nestedUnkeyedContainer(forKey: .d)
        var d: [Int?] = []
        while !list.isAtEnd {
            d.append(try list.decodeNil() ? nil : try list.decode(Int.self))
        }
        self.d = d
        c = try container.decodeNil(forKey: .c) ? nil : try container.decode(Double.self, forKey: .c)
        b = try container.decode(String.self, forKey: .b)
        a = try container.decode(Int.self, forKey: .a)
    }
}

/// A property wrapper style type that forwards to its value's own coding.
struct WireTestForwarding<Value: Codable & Equatable>: Codable, Equatable {
    var value: Value

    init(_ value: Value) {
        self.value = value
    }

    init(from decoder: any Decoder) throws {
        value = try Value(from: decoder)
    }

    func encode(to encoder: any Encoder) throws {
        try value.encode(to: encoder)
    }
}

struct WireTestForwardingHolder: Codable, Equatable {
    var missing: WireTestForwarding<Int?>
    var present: WireTestForwarding<String?>
    var list: WireTestForwarding<[Int]>
}

/// Encodes optionals with `encode` and decodes them with `decodeIfPresent`, and the other way round.
struct WireTestOptionalMix: Codable, Equatable {
    var a: Int?
    var b: String?
    var c: Int??

    enum CodingKeys: String, CodingKey {
        case a, b, c
    }

    init(a: Int?, b: String?, c: Int??) {
        self.a = a
        self.b = b
        self.c = c
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(a, forKey: .a)
        try container.encodeIfPresent(b, forKey: .b)
        try container.encodeIfPresent(c, forKey: .c)
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        a = try container.decodeIfPresent(Int.self, forKey: .a)
        b = try container.decode(String?.self, forKey: .b)
        c = try container.decode(Int??.self, forKey: .c)
    }
}

/// A keyed container with many keys and an unkeyed one with nested containers,
/// so headers and lengths outgrow the byte reserved for them.
struct WireTestWide: Codable, Equatable {
    var values: [Int]
    var rows: [[String]]

    struct Key: CodingKey {
        var stringValue: String
        var intValue: Int? { nil }

        init(stringValue: String) {
            self.stringValue = stringValue
        }

        init?(intValue: Int) {
            return nil
        }
    }

    init(values: [Int], rows: [[String]]) {
        self.values = values
        self.rows = rows
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: Key.self)
        for (index, value) in values.enumerated() {
            try container.encode(value, forKey: Key(stringValue: "field\(index)"))
        }
        var list = container.nestedUnkeyedContainer(forKey: Key(stringValue: "rows"))
        for row in rows {
            var nested = list.nestedUnkeyedContainer()
            for cell in row {
                try nested.encode(cell)
            }
        }
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: Key.self)
        let count = max(0, container.allKeys.count - 1)
        // Backwards, to exercise lookups away from the expected position.
        var values: [Int] = Array(repeating: 0, count: count)
        for index in (0..<count).reversed() {
            values[index] = try container.decode(Int.self, forKey: Key(stringValue: "field\(index)"))
        }
        self.values = values
        var list = try container.nestedUnkeyedContainer(forKey: Key(stringValue: "rows"))
        var rows: [[String]] = []
        while !list.isAtEnd {
            var nested = try list.nestedUnkeyedContainer()
            var row: [String] = []
            while !nested.isAtEnd {
                row.append(try nested.decode(String.self))
            }
            rows.append(row)
        }
        self.rows = rows
    }
}

/// Holds on to the decoder it was given, which is a misuse the decoder must survive.
/// `@unchecked Sendable` is safe: one test uses it, from one task, after decoding ended.
final class WireTestEscapeBox: @unchecked Sendable {
    var decoder: (any Decoder)?
}

struct WireTestEscaping: Decodable {
    init(from decoder: any Decoder) throws {
        (decoder.userInfo[wireTestEscapeKey] as? WireTestEscapeBox)?.decoder = decoder
        _ = try decoder.container(keyedBy: WireTestHandWritten.CodingKeys.self)
    }
}

let wireTestEscapeKey = CodingUserInfoKey(rawValue: "wireTestEscape")!

let wireTestContextKey = CodingUserInfoKey(rawValue: "wireTestContext")!

/// Writes and checks a value taken from `userInfo`.
struct WireTestContextual: Codable, Equatable {
    var seen: String

    init(seen: String) {
        self.seen = seen
    }

    init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        let stored = try container.decode(String.self)
        seen = stored + "/" + (decoder.userInfo[wireTestContextKey] as? String ?? "none")
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(encoder.userInfo[wireTestContextKey] as? String ?? "none")
    }
}

/// A chain whose depth the input decides.
final class WireTestChain: Codable {
    let next: WireTestChain?

    init(depth: Int) {
        next = depth > 1 ? WireTestChain(depth: depth - 1) : nil
    }

    var depth: Int {
        var count = 1
        var link = next
        while let current = link {
            count += 1
            link = current.next
        }
        return count
    }
}

/// Misuses a nested container after its parent moved on.
struct WireTestMisuse: Encodable {
    enum CodingKeys: String, CodingKey {
        case a, b, c
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        var nested = container.nestedUnkeyedContainer(forKey: .a)
        try container.encode(1, forKey: .b)
        try nested.encode(2)
    }
}

/// Decodes only some of the fields that were encoded.
struct WireTestPartial: Codable, Equatable {
    var quantity: Int
    var name: String
}

/// Reads the wrong type for `price`, to check error paths.
struct WireTestWrongItem: Codable {
    var name: String
    var price: String
}

struct WireTestItemList: Codable {
    var items: [WireTestItem]
}

struct WireTestWrongOrder: Codable {
    var items: [WireTestWrongItem]
}

/// A small deterministic generator (SplitMix64) for the garbage tests.
struct WireTestRandom {
    var state: UInt64

    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    mutating func below(_ bound: Int) -> Int {
        Int(next() % UInt64(bound))
    }

    mutating func bytes(_ count: Int) -> [UInt8] {
        (0..<count).map { _ in UInt8(truncatingIfNeeded: next()) }
    }
}

@Suite
struct WireFormatTests {
    func roundTrip<T: Codable>(_ value: T) throws -> T {
        let bytes = try WireEncoder().encode(value)
        return try WireDecoder().decode(T.self, from: bytes)
    }

    func expectRoundTrip<T: Codable & Equatable>(_ value: T, sourceLocation: SourceLocation = #_sourceLocation)
        throws
    {
        #expect(try roundTrip(value) == value, sourceLocation: sourceLocation)
    }

    /// Checks that decoding fails with `decodingFailed` and returns the message.
    @discardableResult
    func expectDecodingFailure<T: Decodable>(
        _ type: T.Type, _ bytes: [UInt8], sourceLocation: SourceLocation = #_sourceLocation
    ) -> String {
        let error = #expect(throws: MultiprocessingError.self, sourceLocation: sourceLocation) {
            _ = try WireDecoder().decode(type, from: bytes)
        }
        #expect(error?.code == .decodingFailed, sourceLocation: sourceLocation)
        return error?.message ?? ""
    }

    /// Bytes of a message whose body is `body` and whose key table is empty.
    func message(_ body: [UInt8]) -> [UInt8] {
        body + [0]
    }

    func varint(_ value: UInt64) -> [UInt8] {
        var bytes: [UInt8] = []
        var value = value
        while value >= 0x80 {
            bytes.append(UInt8(truncatingIfNeeded: value) | 0x80)
            value >>= 7
        }
        bytes.append(UInt8(value))
        return bytes
    }

    @Test func integersAtTheirLimits() throws {
        try expectRoundTrip(WireTestAllIntegers.minimum)
        try expectRoundTrip(WireTestAllIntegers.maximum)
        try expectRoundTrip(
            WireTestAllIntegers(
                i8: -1, i16: -1, i32: -1, i64: -1, i: -1, i128: -1, u8: 0, u16: 0, u32: 0, u64: 0, u: 0, u128: 0))
        for value in [Int.min, -1, 0, 1, 63, 64, -64, -65, 1 << 40, Int.max] {
            try expectRoundTrip(value)
            try expectRoundTrip([value])
            try expectRoundTrip(Int64(value))
        }
        try expectRoundTrip([Int8.min, 0, Int8.max])
        try expectRoundTrip([Int16.min, 0, Int16.max])
        try expectRoundTrip([Int32.min, 0, Int32.max])
        try expectRoundTrip([Int64.min, 0, Int64.max])
        try expectRoundTrip([UInt16.max, 0])
        try expectRoundTrip([UInt32.max, 0])
        try expectRoundTrip([UInt64.max, 0])
        try expectRoundTrip([UInt.max, 0])
        try expectRoundTrip([Int128.min, 0, Int128.max])
        try expectRoundTrip(UInt128.max)
        try expectRoundTrip(UInt8.max)
        try expectRoundTrip(Int8.min)
        try expectRoundTrip(Int16.min)
        try expectRoundTrip(UInt16.max)
        try expectRoundTrip(Int32.min)
        try expectRoundTrip(UInt32.max)
        try expectRoundTrip(UInt.max)
    }

    @Test func smallIntegersAreCompact() throws {
        #expect(try WireEncoder().encode(0) == [0, 0])
        #expect(try WireEncoder().encode(-1) == [1, 0])
        #expect(try WireEncoder().encode(63).count == 2)
        #expect(try WireEncoder().encode(Int.max).count == 11)
    }

    @Test func boolsAndFloatingPoint() throws {
        try expectRoundTrip(true)
        try expectRoundTrip(false)
        try expectRoundTrip([true, false, true])
        for value in [0.0, -0.0, 1.5, -.infinity, .infinity, .leastNonzeroMagnitude, .greatestFiniteMagnitude] {
            try expectRoundTrip(value)
            try expectRoundTrip(Float(value))
        }
        #expect(try roundTrip(Double.nan).isNaN)
        #expect(try roundTrip(Float.nan).isNaN)
        let signalling = Double(nan: 0x1234, signaling: true)
        #expect(try roundTrip(signalling).bitPattern == signalling.bitPattern)
        #expect(try roundTrip(-0.0).sign == .minus)
        let doubles = try roundTrip([Double.nan, 1, -.infinity])
        #expect(doubles[0].isNaN && doubles[1] == 1 && doubles[2] == -.infinity)
        try expectRoundTrip([Float(1.25), -.infinity, .greatestFiniteMagnitude])
    }

    @Test func strings() throws {
        try expectRoundTrip("")
        try expectRoundTrip("hello, world")
        try expectRoundTrip("héllo wörld · 日本語 · 🧑‍🚀 · \u{0}")
        let big = String(repeating: "a€😀", count: (1 << 20) / 8)
        try expectRoundTrip(big)
        try expectRoundTrip(["", "a", "€"])
        #expect(try WireEncoder().encode("") == [0, 0])
    }

    @Test func byteArrays() throws {
        try expectRoundTrip([UInt8]())
        try expectRoundTrip([Int8]())
        try expectRoundTrip([Int8.min, -1, 0, .max])
        var random = WireTestRandom(state: 1)
        let large = random.bytes(10 << 20)
        let bytes = try WireEncoder().encode(large)
        #expect(bytes.count == large.count + 4 + 1)
        #expect(try WireDecoder().decode([UInt8].self, from: bytes) == large)
    }

    @Test func numericArrays() throws {
        let doubles = (0..<100_000).map { Double($0) * 0.5 - 7 }
        try expectRoundTrip(doubles)
        try expectRoundTrip(doubles.map(Float.init))
        try expectRoundTrip((0..<1000).map { $0 * 7919 - 5000 })
        try expectRoundTrip((0..<1000).map { UInt64($0) << 50 })
        try expectRoundTrip([Double]())
        // Numeric arrays are their raw fixed-width bytes, inside other values too.
        #expect(try WireEncoder().encode([1, 2, 3]).count == 1 + 3 * 8 + 1)
        let samples = WireTestSamples(label: "s", samples: doubles, counts: [1, 2, 3])
        try expectRoundTrip(samples)
        #expect(try WireEncoder().encode(samples).count < doubles.count * 8 + 64)
    }

    @Test func numericArraysAtTheTopLevelAreCountBytesAndAnEmptyKeyTable() throws {
        // The layout the general encoder writes, which the whole-message fast path must match.
        #expect(try WireEncoder().encode([1, -2]) == [2] + bytes(of: 1) + bytes(of: -2) + [0])
        let many = (0..<200).map(Double.init)
        let encoded = try WireEncoder().encode(many)
        #expect(Array(encoded[..<2]) == [0xc8, 0x01])
        #expect(encoded.count == 2 + 200 * 8 + 1)
        #expect(try WireDecoder().decode([Double].self, from: encoded) == many)
        for length in 0..<encoded.count {
            expectDecodingFailure([Double].self, Array(encoded[..<length]))
        }
        expectDecodingFailure([Double].self, encoded + [0])
        // The same bytes read as another element type fail rather than reinterpret.
        expectDecodingFailure([Int32].self, encoded)
    }

    @Test func numbersAtTheTopLevelMatchTheGeneralPathAndRejectWhatItRejects() throws {
        // An optional goes through the general path: its encoding is a
        // presence byte, then what the fast path writes for the number alone.
        func check<T: Codable & Equatable>(_ values: [T], sourceLocation: SourceLocation = #_sourceLocation) throws {
            for value in values {
                let fast = try WireEncoder().encode(value)
                #expect([1] + fast == (try WireEncoder().encode(T?.some(value))), sourceLocation: sourceLocation)
                #expect(try WireDecoder().decode(T.self, from: fast) == value, sourceLocation: sourceLocation)
                for length in 0..<fast.count {
                    expectDecodingFailure(T.self, Array(fast[..<length]), sourceLocation: sourceLocation)
                }
                expectDecodingFailure(T.self, fast + [0], sourceLocation: sourceLocation)
            }
        }
        try check([0, 1, -1, 63, -64, 64, 300, Int.max, Int.min])
        try check([Int64.max, Int64.min, 0])
        try check([Int32.max, Int32.min, -5])
        try check([Int16.max, Int16.min])
        try check([Int8.min, Int8.max, 0])
        try check([UInt8.max, 0])
        try check([UInt.max, 0, 128])
        try check([UInt64.max, 1 << 63])
        try check([UInt32.max, UInt32(UInt16.max)])
        try check([UInt16.max, 0])
        try check([true, false])
        try check([Float(-1.5), .infinity, .leastNonzeroMagnitude])
        try check([Double.pi, -0.0, .greatestFiniteMagnitude])
        #expect(try WireEncoder().encode(5) == [10, 0])
        #expect(try WireEncoder().encode(-1) == [1, 0])
        // A value that does not fit the type read, or a Bool byte other than
        // 0 and 1, fails as it does on the general path.
        expectDecodingFailure(Int32.self, try WireEncoder().encode(Int.max))
        expectDecodingFailure(UInt16.self, try WireEncoder().encode(UInt.max))
        expectDecodingFailure(Bool.self, [2, 0])
        expectDecodingFailure(Int.self, [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02, 0])
        expectDecodingFailure(Double.self, [0, 0, 0, 0, 0])
    }

    /// A value in a keyed field: the general path, where the fast paths take top-level values.
    struct WireTestBox<T: Codable & Equatable>: Codable, Equatable {
        var v: T
    }

    @Test func narrowIntegersAreRangeCheckedAtTheirBoundsOnBothPaths() throws {
        func fits<Wide: Codable & Equatable & FixedWidthInteger, Narrow: Codable & Equatable & FixedWidthInteger>(
            _ value: Wide, as narrow: Narrow.Type, sourceLocation: SourceLocation = #_sourceLocation
        ) throws {
            let top = try WireDecoder().decode(Narrow.self, from: try WireEncoder().encode(value))
            #expect(top == Narrow(value), sourceLocation: sourceLocation)
            let boxed = try WireDecoder().decode(WireTestBox<Narrow>.self, from: try WireEncoder().encode(WireTestBox(v: value)))
            #expect(boxed.v == Narrow(value), sourceLocation: sourceLocation)
        }
        func refused<Wide: Codable & Equatable & FixedWidthInteger, Narrow: Codable & Equatable>(
            _ value: Wide, as narrow: Narrow.Type, _ name: String, sourceLocation: SourceLocation = #_sourceLocation
        ) throws {
            let top = expectDecodingFailure(Narrow.self, try WireEncoder().encode(value), sourceLocation: sourceLocation)
            #expect(top.contains("value \(value) does not fit in \(name)"), "\(top)", sourceLocation: sourceLocation)
            let boxed = expectDecodingFailure(
                WireTestBox<Narrow>.self, try WireEncoder().encode(WireTestBox(v: value)), sourceLocation: sourceLocation)
            #expect(boxed.contains("does not fit in \(name)") && boxed.contains("v"), "\(boxed)", sourceLocation: sourceLocation)
        }
        try fits(Int(Int16.min), as: Int16.self)
        try fits(Int(Int16.max), as: Int16.self)
        try refused(Int(Int16.min) - 1, as: Int16.self, "an Int16")
        try refused(Int(Int16.max) + 1, as: Int16.self, "an Int16")
        try fits(Int64(Int32.min), as: Int32.self)
        try fits(Int64(Int32.max), as: Int32.self)
        try refused(Int64(Int32.min) - 1, as: Int32.self, "an Int32")
        try refused(Int64(Int32.max) + 1, as: Int32.self, "an Int32")
        try fits(UInt(UInt16.max), as: UInt16.self)
        try refused(UInt(UInt16.max) + 1, as: UInt16.self, "a UInt16")
        try fits(UInt64(UInt32.max), as: UInt32.self)
        try refused(UInt64(UInt32.max) + 1, as: UInt32.self, "a UInt32")
        try fits(Int64.min, as: Int.self)
        try fits(UInt64.max, as: UInt.self)
        // One byte each: every byte is an Int8 or a UInt8, only 0 and 1 a Bool.
        #expect(try roundTrip(WireTestBox(v: Int8.min)).v == Int8.min)
        #expect(try WireDecoder().decode(Int8.self, from: try WireEncoder().encode(UInt8(0xff))) == -1)
        let bool = expectDecodingFailure(WireTestBox<Bool>.self, try WireEncoder().encode(WireTestBox(v: UInt8(2))))
        #expect(bool.contains("invalid Bool byte 2"))
    }

    private func bytes(of value: Int) -> [UInt8] {
        withUnsafeBytes(of: value.littleEndian) { Array($0) }
    }

    @Test func nestedStructsEnumsAndCollections() throws {
        try expectRoundTrip(WireTestOrder.example)
        var order = WireTestOrder.example
        order.shape = .polygon([WireTestPoint(x: 0, y: 0), WireTestPoint(x: 1, y: 1)])
        order.note = "ring twice"
        order.nested = .some(.some(9))
        try expectRoundTrip(order)
        order.shape = .labelled("label", -3)
        order.nested = nil
        try expectRoundTrip(order)
        order.shape = .empty
        try expectRoundTrip(order)
        try expectRoundTrip(
            Array(repeating: WireTestItem(name: "n", price: 1, quantity: 2, tags: ["t"], discount: 3), count: 1000))
    }

    @Test func enums() throws {
        try expectRoundTrip(WireTestShape.circle(center: WireTestPoint(x: 1, y: 2), radius: 3))
        try expectRoundTrip(WireTestShape.empty)
        try expectRoundTrip([WireTestShape.empty, .labelled("x", 1)])
        try expectRoundTrip(WireTestColor.blue)
        try expectRoundTrip([WireTestColor.red: 1, .blue: 2])
    }

    @Test func optionals() throws {
        try expectRoundTrip(Int?.none)
        try expectRoundTrip(Int?.some(5))
        try expectRoundTrip(Int??.some(.none))
        try expectRoundTrip(Int??.none)
        try expectRoundTrip(Int???.some(.some(.none)))
        try expectRoundTrip([1, nil, 3] as [Int?])
        try expectRoundTrip([nil, .some(nil), 4] as [Int??])
        try expectRoundTrip(["a": nil, "b": 2] as [String: Int?])
        try expectRoundTrip(WireTestPoint?.some(WireTestPoint(x: 1, y: 2)))
        try expectRoundTrip(WireTestPoint?.none)
        #expect(try WireEncoder().encode(Int?.none) == [0, 0])
    }

    @Test func dictionariesAndSets() throws {
        try expectRoundTrip(["one": 1, "two": 2, "": 0])
        try expectRoundTrip([1: "one", -2: "minus two"])
        try expectRoundTrip([String: Int]())
        try expectRoundTrip([WireTestPoint(x: 1, y: 2): "p"])
        try expectRoundTrip(Set(["a", "b", "c"]))
        try expectRoundTrip(Set<Int>())
        try expectRoundTrip(Set([WireTestPoint(x: 0, y: 0), WireTestPoint(x: 1, y: 0)]))
        try expectRoundTrip([[1, 2], [], [3]])
    }

    @Test func classesAndInheritance() throws {
        let animal = try roundTrip(WireTestAnimal(name: "cat"))
        #expect(animal.name == "cat")
        let dog = try roundTrip(WireTestDog(name: "rex", goodBoy: true))
        #expect(dog.name == "rex" && dog.goodBoy)
        #expect(try roundTrip(WireTestChain(depth: 100)).depth == 100)
    }

    @Test func handWrittenCodable() throws {
        try expectRoundTrip(WireTestHandWritten(a: 1, b: "b", c: 2.5, d: [1, nil, 0, nil], e: 7))
        try expectRoundTrip(WireTestHandWritten(a: -1, b: "", c: nil, d: [], e: nil))
    }

    @Test func optionalsAcrossEncodeAndDecodeIfPresent() throws {
        try expectRoundTrip(WireTestOptionalMix(a: nil, b: nil, c: nil))
        try expectRoundTrip(WireTestOptionalMix(a: 1, b: "b", c: .some(nil)))
        try expectRoundTrip(WireTestOptionalMix(a: 0, b: "", c: .some(.some(3))))
    }

    @Test func largeHeadersAndLengths() throws {
        let wide = WireTestWide(
            values: (0..<300).map { $0 * 1000 - 7 },
            rows: (0..<200).map { row in
                (0..<(row % 7)).map { "cell \(row)/\($0) " + String(repeating: "x", count: row) }
            })
        try expectRoundTrip(wide)
        try expectRoundTrip([wide, WireTestWide(values: [], rows: [[]])])
        let list = WireTestItemList(
            items: (0..<2000).map {
                WireTestItem(name: "item \($0)", price: Double($0), quantity: $0, tags: ["t"], discount: nil)
            })
        let decoded = try roundTrip(["x": list])
        #expect(decoded["x"]?.items == list.items)
    }

    @Test func forwardingToOptionalAndArrayCoding() throws {
        try expectRoundTrip(
            WireTestForwardingHolder(
                missing: WireTestForwarding(nil), present: WireTestForwarding("here"),
                list: WireTestForwarding([1, 2, 3])))
        try expectRoundTrip(WireTestForwarding<Int?>(0))
        try expectRoundTrip(WireTestForwarding<Int?>(nil))
    }

    @Test func decodingFewerFieldsSkipsTheRest() throws {
        let item = WireTestItem(name: "apple", price: 0.5, quantity: 3, tags: ["a"], discount: 1)
        let bytes = try WireEncoder().encode([item, item])
        #expect(
            try WireDecoder().decode([WireTestPartial].self, from: bytes) == [
                WireTestPartial(quantity: 3, name: "apple"), WireTestPartial(quantity: 3, name: "apple"),
            ])
    }

    @Test func userInfoIsVisible() throws {
        var encoder = WireEncoder()
        encoder.userInfo[wireTestContextKey] = "sent"
        var decoder = WireDecoder()
        decoder.userInfo[wireTestContextKey] = "received"
        let bytes = try encoder.encode([WireTestContextual(seen: "ignored")])
        let decoded = try decoder.decode([WireTestContextual].self, from: bytes)
        #expect(decoded == [WireTestContextual(seen: "sent/received")])
        let plain = try WireEncoder().encode(WireTestContextual(seen: ""))
        #expect(try WireDecoder().decode(WireTestContextual.self, from: plain) == WireTestContextual(seen: "none/none"))
    }

    @Test func encodingIntoAnExistingBuffer() throws {
        var buffer: [UInt8] = [9, 9, 9]
        try WireEncoder().encode(WireTestOrder.example, into: &buffer)
        #expect(buffer.prefix(3) == [9, 9, 9])
        let decoded = try WireDecoder().decode(WireTestOrder.self, from: Array(buffer.dropFirst(3)))
        #expect(decoded == WireTestOrder.example)
        let fromRaw = try buffer.withUnsafeBytes { raw in
            try WireDecoder().decode(WireTestOrder.self, from: UnsafeRawBufferPointer(rebasing: raw[3...]))
        }
        #expect(fromRaw == WireTestOrder.example)
        // A failed encoding leaves the buffer as it was.
        let before = buffer
        #expect(throws: MultiprocessingError.self) {
            try WireEncoder().encode(WireTestMisuse(), into: &buffer)
        }
        #expect(buffer == before)
    }

    @Test func misusedNestedContainerThrows() {
        let error = #expect(throws: MultiprocessingError.self) {
            _ = try WireEncoder().encode(WireTestMisuse())
        }
        #expect(error?.code == .encodingFailed)
    }

    @Test func deepNestingUpToTheLimitWorks() throws {
        #expect(try roundTrip(WireTestChain(depth: 500)).depth == 500)
        let error = #expect(throws: MultiprocessingError.self) {
            _ = try WireEncoder().encode(WireTestChain(depth: 600))
        }
        #expect(error?.code == .encodingFailed)
    }

    @Test func everyTruncationThrows() throws {
        let bytes = try WireEncoder().encode(WireTestOrder.example)
        for length in 0..<bytes.count {
            expectDecodingFailure(WireTestOrder.self, Array(bytes[..<length]))
        }
        let items = try WireEncoder().encode([WireTestItem(name: "a", price: 1, quantity: 2, tags: [], discount: nil)])
        for length in 0..<items.count {
            expectDecodingFailure([WireTestItem].self, Array(items[..<length]))
        }
    }

    @Test func lyingLengthsFailWithoutAllocating() {
        let clock = ContinuousClock()
        let started = clock.now
        let huge = varint(1 << 60)
        let tail = [UInt8](repeating: 7, count: 10)
        expectDecodingFailure([UInt8].self, message(huge + tail))
        expectDecodingFailure([Double].self, message(huge + tail))
        expectDecodingFailure([Int].self, message(huge + tail))
        expectDecodingFailure([String].self, message(huge + tail))
        expectDecodingFailure([WireTestPoint].self, message(huge + tail))
        expectDecodingFailure(Set<Int>.self, message(huge + tail))
        expectDecodingFailure([String: Int].self, message(huge + tail))
        expectDecodingFailure(String.self, message(huge + tail))
        expectDecodingFailure([UInt8].self, message(varint(UInt64.max) + tail))
        // Counts that fit in the input but not in memory at the element's size.
        let many = varint(1 << 20) + [UInt8](repeating: 0, count: 1 << 20)
        expectDecodingFailure([WireTestItem].self, message(many))
        // A keyed container header claiming many entries.
        expectDecodingFailure(WireTestPoint.self, message(varint(1 << 62 | 2) + tail))
        // A key table claiming many keys.
        expectDecodingFailure(Int.self, [0] + huge + [UInt8(huge.count)])
        #expect(clock.now - started < .seconds(2))
    }

    @Test func trailingBytesThrow() throws {
        var bytes = try WireEncoder().encode(5)
        bytes.insert(7, at: 1)
        #expect(expectDecodingFailure(Int.self, bytes).contains("unexpected bytes"))
        expectDecodingFailure(Int.self, try WireEncoder().encode(5) + [0])
        // The point's key table and its length take the last 6 bytes.
        var point = try WireEncoder().encode(WireTestPoint(x: 1, y: 2))
        point.insert(0, at: point.count - 6)
        expectDecodingFailure(WireTestPoint.self, point)
    }

    @Test func invalidUTF8Throws() throws {
        #expect(expectDecodingFailure(String.self, message([2, 0xff, 0xfe])).contains("UTF-8"))
        expectDecodingFailure(String.self, message([2, 0xc3, 0x28]))
        // A key name in the table.
        var bytes = try WireEncoder().encode(WireTestPoint(x: 1, y: 2))
        let tableByte = bytes.lastIndex(of: UInt8(ascii: "x"))!
        bytes[tableByte] = 0xff
        expectDecodingFailure(WireTestPoint.self, bytes)
    }

    @Test func invalidScalarsThrow() {
        expectDecodingFailure(Bool.self, message([2]))
        expectDecodingFailure([Bool].self, message([2, 1, 5]))
        expectDecodingFailure(Int8.self, message([]))
        expectDecodingFailure(Int32.self, message(varint(UInt64(Int64(Int32.max) + 1) * 2)))
        expectDecodingFailure(UInt16.self, message(varint(70000)))
        expectDecodingFailure(Int.self, message([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]))
        expectDecodingFailure(Int?.self, message([2, 0]))
        expectDecodingFailure(Double.self, message([1, 2]))
        expectDecodingFailure(Int.self, [])
        expectDecodingFailure(Int.self, [0x80])
    }

    @Test func messagesNameThePathAndTheProblem() {
        // WireTestPoint whose "y" entry holds 2 bytes instead of 8.
        let body: [UInt8] = [2 << 2 | 2, 0, 8] + [UInt8](repeating: 0, count: 8) + [1, 2, 0, 0]
        let table: [UInt8] = [2, 1, UInt8(ascii: "x"), 1, UInt8(ascii: "y")]
        let text = expectDecodingFailure(WireTestPoint.self, body + table + [UInt8(table.count)])
        #expect(text == "at y: expected 8 bytes for a Double, 2 remain")
    }

    @Test func escapedDecoderThrowsInsteadOfReadingFreedMemory() throws {
        let box = WireTestEscapeBox()
        var decoder = WireDecoder()
        decoder.userInfo[wireTestEscapeKey] = box
        _ = try decoder.decode(WireTestEscaping.self, from: try WireEncoder().encode(WireTestPoint(x: 1, y: 2)))
        let escaped = try #require(box.decoder)
        let error = #expect(throws: MultiprocessingError.self) {
            _ = try escaped.container(keyedBy: WireTestHandWritten.CodingKeys.self)
        }
        #expect(error?.code == .decodingFailed)
        box.decoder = nil  // the box and the decoder's user info hold each other
    }

    @Test func wrongTypesThrowWithThePath() throws {
        let bytes = try WireEncoder().encode(WireTestPoint(x: 1, y: 2))
        expectDecodingFailure([Int].self, bytes)
        expectDecodingFailure(WireTestShape.self, bytes)
        expectDecodingFailure(String.self, try WireEncoder().encode([1, 2, 3]))
        let items = (0..<5).map { WireTestItem(name: "n\($0)", price: 1, quantity: $0, tags: [], discount: nil) }
        let order = try WireEncoder().encode(WireTestItemList(items: items))
        let text = expectDecodingFailure(WireTestWrongOrder.self, order)
        #expect(text.contains("at items[0].price"))
        let price = try WireEncoder().encode(WireTestPoint(x: 3, y: 4))
        expectDecodingFailure(WireTestItem.self, price)
    }

    @Test func excessiveNestingThrows() {
        // WireTestChain nested far deeper than the encoder allows, written by hand:
        // each level is a keyed container with one entry "next" (key index 0).
        var body: [UInt8] = [2]
        for _ in 0..<5000 {
            body = [6, 0] + varint(UInt64(body.count)) + body
        }
        let table: [UInt8] = [1, 4] + Array("next".utf8)
        let bytes = body + table + [UInt8(table.count)]
        #expect(expectDecodingFailure(WireTestChain.self, bytes).contains("deeper"))
    }

    /// Mutates a valid encoding in one of several ways.
    func garbage(from valid: [UInt8], round: Int, random: inout WireTestRandom) -> [UInt8] {
        var bytes = valid
        switch round % 4 {
        case 0:
            bytes = random.bytes(random.below(64))
            bytes.append(0)
        case 1:
            for _ in 0...random.below(4) {
                bytes[random.below(bytes.count)] = UInt8(truncatingIfNeeded: random.next())
            }
        case 2:
            let start = random.below(bytes.count)
            bytes.removeSubrange(start..<min(bytes.count, start + 1 + random.below(8)))
        default:
            bytes.insert(contentsOf: random.bytes(1 + random.below(8)), at: random.below(bytes.count))
        }
        return bytes
    }

    /// Decodes mutated encodings of a value; each must decode or throw `decodingFailed`.
    func fuzz<T: Codable>(_ value: T, rounds: Int, seed: UInt64) throws -> Int {
        var random = WireTestRandom(state: seed)
        let valid = try WireEncoder().encode(value)
        var decoded = 0
        for round in 0..<rounds {
            let bytes = garbage(from: valid, round: round, random: &random)
            do {
                _ = try WireDecoder().decode(T.self, from: bytes)
                decoded += 1
            } catch let error as MultiprocessingError {
                #expect(error.code == .decodingFailed)
            }
        }
        return decoded
    }

    @Test func randomGarbageNeverCrashes() throws {
        #expect(try fuzz(WireTestOrder.example, rounds: 2000, seed: 1) < 2000)
        #expect(try fuzz([WireTestShape.empty, .labelled("a", 1), nil], rounds: 1000, seed: 2) < 1000)
        _ = try fuzz(WireTestHandWritten(a: 1, b: "b", c: nil, d: [1, nil], e: 3), rounds: 1000, seed: 3)
        _ = try fuzz(WireTestWide(values: [1, 2, 3], rows: [["a"], []]), rounds: 1000, seed: 4)
        _ = try fuzz(WireTestDog(name: "rex", goodBoy: false), rounds: 500, seed: 5)
        _ = try fuzz(["k": [1.5, 2]] as [String: [Double]], rounds: 500, seed: 6)
        _ = try fuzz(WireTestChain(depth: 5), rounds: 500, seed: 7)
    }
}
