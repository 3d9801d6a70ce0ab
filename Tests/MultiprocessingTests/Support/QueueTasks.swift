#if canImport(Glibc)
    import Glibc
#endif
import Multiprocessing

struct PutValue: ProcessTask {
    var queue: ProcessQueue<Int>
    var value: Int
    func run() throws { try queue.put(value) }
}

/// Puts 0, 1, 2, ... and reports each index after its put returned, until killed.
struct PutForever: ProcessTask {
    var queue: ProcessQueue<[Int]>
    var progress: Connection
    func run() throws {
        var index = 0
        while true {
            try queue.put(Array(repeating: index, count: 100 + index % 50))
            try progress.send(index)
            index += 1
        }
    }
}

struct PutBigValue: ProcessTask {
    var queue: ProcessQueue<[UInt8]>
    var size: Int
    func run() throws {
        var bytes = [UInt8](repeating: 7, count: size)
        bytes[12345] = 1
        bytes[size - 1] = 2
        try queue.put(bytes)
    }
}

/// Puts `count` values of `size` bytes, value `i` filled with `i % 256`.
struct PutManyLargeValues: ProcessTask {
    var queue: ProcessQueue<[UInt8]>
    var count: Int
    var size: Int
    func run() throws {
        for index in 0..<count { try queue.put([UInt8](repeating: UInt8(index % 256), count: size)) }
    }
}

struct Unencodable: Codable, Sendable {
    var value: Int
    init(value: Int) { self.value = value }
    init(from decoder: any Decoder) throws { value = 0 }
    func encode(to encoder: any Encoder) throws {
        throw EncodingError.invalidValue(value, .init(codingPath: [], debugDescription: "refuses to be encoded"))
    }
}
