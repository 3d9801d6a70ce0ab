import Multiprocessing

// MARK: X.wire: the wire format alone, in this process

/// A small record of the kind tasks take: a string, numbers, a list, an optional.
struct WireRecord: Codable, Equatable {
    var name: String
    var price: Double
    var quantity: Int
    var tags: [String]
    var discount: Double?
}

/// Encodes and decodes values in this process, with no pipe or process in
/// between: what a message costs the library itself, and the figure that
/// shows a change in the codec, which the cross-process workloads hide in
/// their scheduling noise.
func wireWorkloads(_ report: inout Report) throws {
    let record = WireRecord(name: "widget", price: 9.5, quantity: 3, tags: ["a", "bb"], discount: nil)
    try measureRoundTrips("X.wire.int", 123_456_789, count: 200_000, &report)
    try measureRoundTrips("X.wire.ints1000", Array(0..<1000), count: 20_000, &report)
    try measureRoundTrips("X.wire.record", record, count: 50_000, &report)
}

private func measureRoundTrips<T: Codable & Equatable>(
    _ name: String, _ value: T, count: Int, _ report: inout Report
) throws {
    guard selected(name) else { return }
    let encoder = WireEncoder()
    let decoder = WireDecoder()
    var buffer: [UInt8] = []
    var samples: [Double] = []
    let rounds = reps(count)
    for _ in 0..<7 {
        let start = now()
        for _ in 0..<rounds {
            buffer.removeAll(keepingCapacity: true)
            try encoder.encode(value, into: &buffer)
            let decoded = try buffer.withUnsafeBytes { try decoder.decode(T.self, from: $0) }
            precondition(decoded == value)
        }
        samples.append((now() - start).microseconds * 1000 / Double(rounds))
    }
    report.add(
        Measurement(
            name: name, unit: "ns", better: "lower", samples: samples,
            note: "WireEncoder.encode(_:into:) then WireDecoder.decode, in one process; \(buffer.count) bytes"))
}
