#if canImport(Glibc)
    import Glibc
#endif
@testable import Multiprocessing

/// Writes a frame header that claims `claimed` bytes and then a few payload
/// bytes, then waits for one message from the parent and echoes it.
struct ForgeFrameHeader: ProcessTask {
    var connection: Connection
    var claimed: UInt64
    func run() throws {
        var bytes: [UInt8]
        if claimed >= 0xFFFF_FFFF {
            bytes = [0xFF, 0xFF, 0xFF, 0xFF] + withUnsafeBytes(of: claimed.littleEndian, Array.init)
        } else {
            bytes = withUnsafeBytes(of: UInt32(claimed).littleEndian, Array.init)
        }
        bytes += [1, 2, 3, 4, 5, 6, 7, 8]
        try bytes.withUnsafeBytes { try Platform.writeAll(connection.writeFD, $0) }
        let reply: String = try connection.receive()
        try connection.send(reply)
    }
}

/// Sends messages of the given sizes, then reports what sending one more
/// byte than its end's limit threw.
struct SendSizes: ProcessTask {
    var connection: Connection
    var sizes: [Int]
    func run() throws -> String {
        for size in sizes { try connection.sendBytes([UInt8](repeating: 7, count: size)) }
        do {
            try connection.sendBytes([UInt8](repeating: 7, count: connection.maximumMessageSize + 1))
            return "sent"
        } catch let error as MultiprocessingError {
            return "\(error.code)"
        }
    }
}

/// Echoes one message, then waits for the parent to close its end.
struct ReplyOnce: ProcessTask {
    var connection: Connection
    func run() throws {
        let message: String = try connection.receive()
        try connection.send(message)
        _ = try? connection.receiveBytes()
    }
}

/// Exits with `code` once a message arrives (or the parent's end closes).
struct ExitOnMessage: ProcessTask {
    var connection: Connection
    var code: Int32
    func run() {
        _ = try? connection.receiveBytes()
        exit(code)
    }
}
