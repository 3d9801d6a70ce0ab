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

/// Writes `text` into a descriptor that arrives over its connection.
struct WriteIntoReceivedDescriptor: ProcessTask {
    var connection: Connection
    var text: String
    func run() throws {
        let received = try connection.receiveDescriptor()
        let bytes = Array(text.utf8)
        try bytes.withUnsafeBytes { try Platform.writeAll(received.rawValue, $0) }
    }
}

/// Makes a pipe, sends its reading end to the parent and writes `text` into it.
struct SendPipeReadingEnd: ProcessTask {
    var connection: Connection
    var text: String
    func run() throws {
        let pipe = try Platform.makePipe()
        try connection.sendDescriptor(pipe.read)
        Platform.close(pipe.read)
        let bytes = Array(text.utf8)
        try bytes.withUnsafeBytes { try Platform.writeAll(pipe.write, $0) }
        Platform.close(pipe.write)
    }
}

/// Receives a connection inside a value, and echoes one message on it.
struct EchoOnReceivedConnection: ProcessTask {
    struct Handoff: Codable { var connection: Connection; var label: String }
    var connection: Connection
    func run() throws {
        let handoff = try connection.receive(Handoff.self)
        let message: String = try handoff.connection.receive()
        try handoff.connection.send(handoff.label + ": " + message)
    }
}

/// Reads everything from `fd` until end-of-file.
func readToEnd(_ fd: Int32) throws -> String {
    var bytes: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 4096)
    while true {
        let n = chunk.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
        if n < 0 && errno == EINTR { continue }
        if n < 0 { throw Platform.error("read") }
        if n == 0 { break }
        bytes += chunk.prefix(n)
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// Connects to a listener, sends a greeting and returns the reply, or the
/// code of what failed; and how many descriptors it left open.
struct ConnectAndGreet: ProcessTask {
    struct Outcome: Codable, Sendable {
        var reply: String?
        var errorCode: String?
        var leakedDescriptors: Int
        var carriesDescriptors: Bool?
    }
    var address: ConnectionAddress
    var key: [UInt8]?
    func run() throws -> Outcome {
        let before = openDescriptors().count
        do {
            let connection = try Connection.connect(to: address, authenticationKey: key)
            try connection.send("hello from \(getpid())")
            let reply: String = try connection.receive()
            let carries = connection.carriesDescriptors
            connection.close()
            return Outcome(reply: reply, leakedDescriptors: openDescriptors().count - before, carriesDescriptors: carries)
        } catch let error as MultiprocessingError {
            return Outcome(errorCode: "\(error.code)", leakedDescriptors: openDescriptors().count - before)
        }
    }
}

/// Listens with `key`, says so on `ready`, and returns what one accept gave.
struct ListenAndAcceptOnce: ProcessTask {
    var address: ConnectionAddress
    var key: [UInt8]?
    var ready: Connection
    func run() throws -> String {
        let listener = try Listener(address: address, authenticationKey: key)
        let before = openDescriptors().count
        try ready.send("listening")
        do {
            let connection = try listener.accept()
            let message: String = try connection.receive()
            try connection.send(message)
            return "accepted"
        } catch let error as MultiprocessingError {
            return "\(error.code), leaked \(openDescriptors().count - before)"
        }
    }
}

/// Creates a named segment, says so, and waits to be killed.
struct CreateNamedSegmentAndWait: ProcessTask {
    var name: String
    var persistent: Bool
    var ready: Connection
    func run() throws {
        let memory = try SharedMemory.create(named: name, size: 4096, persistent: persistent)
        memory.bytes.storeBytes(of: 7, as: UInt8.self)
        try ready.send("created")
        _ = try? ready.receiveBytes()
        withExtendedLifetime(memory) {}
    }
}
