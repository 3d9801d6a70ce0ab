#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import CMultiprocessing
import Synchronization

/// One end of a message channel between processes (Python's `Pipe()`).
///
/// Make a pair with ``pipe(duplex:maximumMessageSize:)``, keep one end and hand the other to a
/// child inside its task value. Messages keep their boundaries: each
/// ``send(_:)`` arrives as exactly one ``receive(_:)-6s5vk``. Values travel in the
/// library's binary wire format; raw bytes travel as they are.
///
/// ```swift
/// let (parentEnd, childEnd) = try Connection.pipe()
/// let child = try ChildProcess(Echo(connection: childEnd))
/// try child.start()
/// try parentEnd.send("hello")
/// let reply: String = try parentEnd.receive()
/// ```
///
/// Each direction is a pipe (the fastest blocking transport on Linux; a duplex
/// connection is two pipes). Sends from several threads are serialized, and so
/// are receives.
///
/// - Important: When the other end is closed (or its process exits), a
///   receive throws ``MultiprocessingError`` with code `.endOfStream` and a
///   send throws the same code: nothing blocks forever on a peer that is gone.
public final class Connection: @unchecked Sendable {
    // @unchecked: the descriptors are set once; reads are serialized by
    // `reader`, writes by `writeLock`, and closing by `closed`.
    let readFD: Int32
    let writeFD: Int32
    private let reader: ForkSafeMutex<FrameReader>
    private let writeLock = ForkSafeMutex(())
    private let closed = Atomic(false)

    private let sizeLimit: Atomic<Int>

    /// The maximum message size of a connection made without one: 1 GiB.
    public static let defaultMaximumMessageSize = 1 << 30

    /// The largest message, in bytes, this end sends or receives.
    ///
    /// A received frame whose header claims more fails with
    /// `.messageTooLarge` before anything is allocated for it; the stream is
    /// then in the middle of that message, so this end can no longer receive
    /// (``state`` is ``State/unreadable``). A send of more fails with
    /// `.messageTooLarge` and writes nothing. Set it with
    /// ``pipe(duplex:maximumMessageSize:)`` or
    /// ``setMaximumMessageSize(_:)``; an end handed to a child keeps it.
    public var maximumMessageSize: Int { sizeLimit.load(ordering: .relaxed) }

    init(readFD: Int32, writeFD: Int32, maximumMessageSize: Int = Connection.defaultMaximumMessageSize) {
        self.readFD = readFD
        self.writeFD = writeFD
        sizeLimit = Atomic(maximumMessageSize)
        // Only a Unix socket carries descriptors (a TCP socket cannot).
        carriesDescriptors = Platform.isUnixSocket(readFD >= 0 ? readFD : writeFD)
        reader = ForkSafeMutex(
            FrameReader(fd: readFD, capacity: readFD >= 0 ? 64 * 1024 : 16, carriesDescriptors: carriesDescriptors))
        Platform.ignoreBrokenPipeSignal()
    }

    /// Whether this end is a Unix socket, which can carry file descriptors
    /// (``sendDescriptor(_:)``) and objects that own them (a ``Connection``
    /// inside a value): ends made by ``socketPair(maximumMessageSize:)``,
    /// ``Listener`` and ``Connection/connect(to:authenticationKey:authenticationTimeout:maximumMessageSize:)``.
    /// Ends made by ``pipe(duplex:maximumMessageSize:)`` are pipes and cannot.
    public let carriesDescriptors: Bool

    /// Sets ``maximumMessageSize``, higher or lower, for this end only.
    ///
    /// Lower it on an end that receives from a process you do not trust, so
    /// that a lying or corrupt frame header costs nothing but an error.
    ///
    /// - Parameter size: The largest message in bytes, at least 1.
    /// - Throws: `.invalidArgument` for a size below 1.
    public func setMaximumMessageSize(_ size: Int) throws {
        sizeLimit.store(try Self.validLimit(size), ordering: .relaxed)
    }

    static func validLimit(_ size: Int) throws -> Int {
        guard size >= 1 else {
            throw MultiprocessingError(
                .invalidArgument, "a connection's maximumMessageSize must be at least 1 byte, not \(size)")
        }
        return size
    }

    /// What a ``Connection`` can still do.
    public enum State: Sendable, Hashable {
        /// It sends and receives (as far as its direction allows).
        case open
        /// A received frame was larger than ``Connection/maximumMessageSize``
        /// and refused: the rest of that message is still in the stream, so
        /// every receive throws `.messageTooLarge`. Sends still work. Close it.
        case unreadable
        /// ``Connection/close()`` was called.
        case closed
    }

    /// What this end can still do: see ``State``.
    public var state: State {
        if isClosed { return .closed }
        return reader.withLock { $0.refusedFrame != nil } ? .unreadable : .open
    }

    deinit {
        if !closed.load(ordering: .relaxed) { closeDescriptors() }
    }

    /// Closes the descriptors; a socket end reads and writes through one.
    private func closeDescriptors() {
        Platform.close(readFD)
        if writeFD != readFD { Platform.close(writeFD) }
    }

    /// Makes a connected pair.
    ///
    /// - Parameters:
    ///   - duplex: When `true` (the default) both ends send and
    ///     receive. When `false` the first end only receives and the second
    ///     only sends, as in Python's `Pipe(duplex=False)`.
    ///   - maximumMessageSize: The largest message, in bytes, either end
    ///     sends or receives (``maximumMessageSize``); 1 GiB by default.
    /// - Returns: The two ends.
    /// - Throws: ``MultiprocessingError`` with code `.systemCall` when the
    ///   pipes cannot be created (for example when the process is out of
    ///   descriptors); `.invalidArgument` for a `maximumMessageSize` below 1.
    public static func pipe(
        duplex: Bool = true, maximumMessageSize: Int = Connection.defaultMaximumMessageSize
    ) throws -> (Connection, Connection) {
        let limit = try validLimit(maximumMessageSize)
        let forward = try Platform.makePipe()
        guard duplex else {
            return (
                Connection(readFD: forward.read, writeFD: -1, maximumMessageSize: limit),
                Connection(readFD: -1, writeFD: forward.write, maximumMessageSize: limit)
            )
        }
        let backward: (read: Int32, write: Int32)
        do {
            backward = try Platform.makePipe()
        } catch {
            Platform.close(forward.read)
            Platform.close(forward.write)
            throw error
        }
        return (
            Connection(readFD: forward.read, writeFD: backward.write, maximumMessageSize: limit),
            Connection(readFD: backward.read, writeFD: forward.write, maximumMessageSize: limit)
        )
    }

    /// Whether ``close()`` was called.
    public var isClosed: Bool { closed.load(ordering: .acquiring) }

    /// Whether a whole or partial message is already buffered in this process.
    var hasBufferedMessage: Bool { reader.withLock { $0.hasBufferedBytes } }

    /// Whether this end can receive.
    public var isReadable: Bool { readFD >= 0 }

    /// Whether this end can send.
    public var isWritable: Bool { writeFD >= 0 }

    /// Closes this end. The peer's receives then end with `.endOfStream`.
    /// Closing twice does nothing.
    public func close() {
        guard closed.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
        else { return }
        closeDescriptors()
    }

    /// Sends a value.
    ///
    /// - Parameter value: Any `Encodable` value; it is encoded before anything
    ///   is written, so an encoding error leaves the connection untouched.
    /// - Throws: `.encodingFailed` when the value cannot be encoded,
    ///   `.messageTooLarge` when it encodes to more than
    ///   ``maximumMessageSize`` (nothing is written), `.endOfStream` when the
    ///   other end is closed, `.closed` when this end is.
    ///
    /// On an end that ``carriesDescriptors``, objects that own descriptors
    /// (a ``Connection``, for one) travel inside the value: the receiver
    /// gets its own copies of their descriptors.
    public func send<T: Encodable>(_ value: T) throws {
        let fd = try writable()
        var buffer: [UInt8] = [0, 0, 0, 0]
        var encoder = WireEncoder()
        let transfer = carriesDescriptors ? DescriptorTransfer() : nil
        if let transfer { encoder.userInfo[.descriptorTransfer] = transfer }
        try encoder.encode(value, into: &buffer)
        try checkSendable(buffer.count - 4)
        try writeLock.withLock { _ in
            try Self.resetIsEndOfStream {
                if let transfer, !transfer.descriptors.isEmpty { try Self.announce(transfer.descriptors, on: fd) }
                try Frame.write(reservedHeader: &buffer, to: fd)
            }
        }
    }

    /// Sends `descriptors` with SCM_RIGHTS beside announcements of them, at
    /// most 32 to a `sendmsg`.
    private static func announce(_ descriptors: [Int32], on fd: Int32) throws {
        for first in stride(from: 0, to: descriptors.count, by: 32) {
            let part = Array(descriptors[first..<min(first + 32, descriptors.count)])
            var header: [UInt8] = []
            withUnsafeBytes(of: Frame.descriptorMarker.littleEndian) { header += $0 }
            withUnsafeBytes(of: UInt32(part.count).littleEndian) { header += $0 }
            let sent = header.withUnsafeBytes { bytes in
                part.withUnsafeBufferPointer {
                    mp_send_with_fds(fd, bytes.baseAddress, bytes.count, $0.baseAddress, Int32($0.count), 0)
                }
            }
            if sent < 0 {
                if errno == EPIPE || errno == ECONNRESET {
                    throw MultiprocessingError(.endOfStream, "the other end of the connection was closed", errno: errno)
                }
                throw Platform.error("sendmsg of descriptors")
            }
            if sent < header.count {
                try header.withUnsafeBytes { try Platform.writeAll(fd, UnsafeRawBufferPointer(rebasing: $0[sent...])) }
            }
        }
    }

    /// Runs a write; a TCP peer that reset the connection has closed it, as far as a sender is concerned.
    private static func resetIsEndOfStream<R>(_ body: () throws -> R) throws -> R {
        do {
            return try body()
        } catch let error as MultiprocessingError where error.errno == ECONNRESET {
            throw MultiprocessingError(.endOfStream, "the other end of the connection was closed", errno: ECONNRESET)
        }
    }

    /// Throws `.messageTooLarge` for a message above this end's limit.
    func checkSendable(_ length: Int) throws {
        let limit = maximumMessageSize
        guard length <= limit else {
            throw MultiprocessingError(
                .messageTooLarge,
                "a message of \(length) bytes is more than this connection's maximumMessageSize of \(limit); "
                    + "nothing was sent (raise the limit with setMaximumMessageSize(_:) on both ends)")
        }
    }

    /// Receives the next value.
    ///
    /// - Parameter type: The type the peer sent.
    /// - Returns: The decoded value.
    /// - Throws: `.endOfStream` when the other end closed, `.decodingFailed`
    ///   when the message is not a `T`.
    public func receive<T: Decodable>(_ type: T.Type = T.self) throws -> T {
        let message = try receiveMessage()
        return try decode(T.self, message)
    }

    /// Receives the next value without blocking a thread of the cooperative pool.
    public func receive<T: Decodable & Sendable>(_ type: T.Type = T.self) async throws -> T {
        let message =
            try waitReadable(timeout: .zero)
            ? try receiveMessage() : try await BlockingThreads.run { try self.receiveMessage() }
        return try decode(T.self, message)
    }

    /// Decodes a message, handing the descriptors that came with it to the
    /// objects in the value that own them; those no object took are closed.
    private func decode<T: Decodable>(_ type: T.Type, _ message: (bytes: [UInt8], descriptors: [Int32])) throws -> T {
        guard carriesDescriptors else { return try WireDecoder().decode(T.self, from: message.bytes) }
        let transfer = DescriptorTransfer(descriptors: message.descriptors)
        defer { transfer.closeUntaken() }
        var decoder = WireDecoder()
        decoder.userInfo[.descriptorTransfer] = transfer
        return try decoder.decode(T.self, from: message.bytes)
    }

    /// Receives a message and the descriptors sent with it.
    private func receiveMessage() throws -> (bytes: [UInt8], descriptors: [Int32]) {
        guard readFD >= 0 else {
            throw MultiprocessingError(.invalidArgument, "this end of a one-way connection only sends")
        }
        guard !isClosed else { throw MultiprocessingError(.closed, "the connection is closed") }
        let limit = maximumMessageSize
        return try reader.withLock { try $0.readMessage(limit: limit) }
    }

    /// Sends raw bytes as one message (Python's `send_bytes`).
    ///
    /// - Throws: `.messageTooLarge` above ``maximumMessageSize`` (nothing is
    ///   written), `.endOfStream` when the other end is closed, `.closed`
    ///   when this end is.
    public func sendBytes(_ bytes: UnsafeRawBufferPointer) throws {
        let fd = try writable()
        try checkSendable(bytes.count)
        try writeLock.withLock { _ in try Self.resetIsEndOfStream { try Frame.write(bytes, to: fd) } }
    }

    /// Writes bytes that already hold whole frames.
    func sendRaw(_ frames: UnsafeRawBufferPointer) throws {
        let fd = try writable()
        try writeLock.withLock { _ in try Self.resetIsEndOfStream { try Platform.writeAll(fd, frames) } }
    }

    /// Sends raw bytes as one message (Python's `send_bytes`).
    public func sendBytes(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try sendBytes($0) }
    }

    /// Receives the next message as raw bytes (Python's `recv_bytes`).
    ///
    /// - Throws: `.endOfStream` when the other end closed; `.messageTooLarge`
    ///   when a frame claims more than ``maximumMessageSize`` (see ``State/unreadable``).
    public func receiveBytes() throws -> [UInt8] {
        try receiveFrame()
    }

    /// Receives the next message into a buffer the caller owns (Python's `recv_bytes_into`).
    ///
    /// Reusing one buffer for many large messages saves an allocation and its
    /// page faults per message.
    ///
    /// - Parameter buffer: Where the message's bytes go.
    /// - Returns: The message's length.
    /// - Throws: `.invalidArgument` when the message is larger than `buffer`;
    ///   the message then stays unread, so nothing is lost. `.endOfStream`
    ///   when the other end closed.
    @available(*, noasync, message: "Blocks the calling thread")
    public func receiveBytes(into buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        guard readFD >= 0 else {
            throw MultiprocessingError(.invalidArgument, "this end of a one-way connection only sends")
        }
        guard !isClosed else { throw MultiprocessingError(.closed, "the connection is closed") }
        // The caller's buffer is only used inside this call, on this thread;
        // it crosses the lock's isolation boundary as a plain address.
        let address = UInt(bitPattern: buffer.baseAddress)
        let count = buffer.count
        let limit = maximumMessageSize
        return try reader.withLock {
            try $0.readFrame(
                into: UnsafeMutableRawBufferPointer(start: UnsafeMutableRawPointer(bitPattern: address), count: count),
                limit: limit)
        }
    }

    /// Receives the next message as raw bytes without blocking a cooperative thread.
    public func receiveBytes() async throws -> [UInt8] {
        if try waitReadable(timeout: .zero) { return try receiveFrame() }
        return try await BlockingThreads.run { try self.receiveFrame() }
    }

    /// Whether a message (or the end of the stream) can be received without blocking.
    ///
    /// - Parameter timeout: How long to wait; `nil` waits until something arrives.
    @available(*, noasync, message: "Use waitForMessage(timeout:) in async code")
    public func poll(timeout: Duration? = .zero) throws -> Bool {
        try waitReadable(timeout: timeout)
    }

    private func waitReadable(timeout: Duration?) throws -> Bool {
        guard readFD >= 0 else {
            throw MultiprocessingError(.invalidArgument, "this end of a one-way connection only sends")
        }
        guard !isClosed else { throw MultiprocessingError(.closed, "the connection is closed") }
        if reader.withLock({ $0.hasBufferedBytes }) { return true }
        return try Platform.waitReadable([readFD], deadline: timeout.map { .now + $0 })[0]
    }

    /// Waits until a message (or the end of the stream) can be received, without blocking a cooperative thread.
    public func waitForMessage(timeout: Duration? = nil) async throws -> Bool {
        try await BlockingThreads.run { try self.waitReadable(timeout: timeout) }
    }

    /// Receives a frame on the calling thread, even from async code (for
    /// processes that own their thread, like pool workers).
    func receiveFrame() throws -> [UInt8] {
        guard readFD >= 0 else {
            throw MultiprocessingError(.invalidArgument, "this end of a one-way connection only sends")
        }
        guard !isClosed else { throw MultiprocessingError(.closed, "the connection is closed") }
        let limit = maximumMessageSize
        return try reader.withLock { try $0.readFrame(limit: limit) }
    }

    private func writable() throws -> Int32 {
        guard writeFD >= 0 else {
            throw MultiprocessingError(.invalidArgument, "this end of a one-way connection only receives")
        }
        guard !isClosed else { throw MultiprocessingError(.closed, "the connection is closed") }
        return writeFD
    }
}

extension Connection: Codable {
    /// Encodes this end for a child process: its descriptors travel beside the
    /// encoded bytes (as inherited descriptors, or SCM_RIGHTS for the fork
    /// server). Only the encoder that builds a child's task value can do this.
    public func encode(to encoder: any Encoder) throws {
        guard let transfer = encoder.userInfo[.descriptorTransfer] as? DescriptorTransfer else {
            throw MultiprocessingError(
                .encodingFailed,
                "a Connection can travel only inside the task value of a child process it is handed to")
        }
        guard !isClosed else { throw MultiprocessingError(.closed, "a closed connection cannot be handed to a child") }
        var container = encoder.unkeyedContainer()
        try container.encode(readFD >= 0 ? transfer.add(readFD) : -1)
        try container.encode(writeFD >= 0 ? transfer.add(writeFD) : -1)
        try container.encode(maximumMessageSize)
    }

    public convenience init(from decoder: any Decoder) throws {
        guard let transfer = decoder.userInfo[.descriptorTransfer] as? DescriptorTransfer else {
            throw MultiprocessingError(
                .decodingFailed, "a Connection can be decoded only from the task value of a child process")
        }
        var container = try decoder.unkeyedContainer()
        let read = try transfer.take(container.decode(Int.self))
        let write = try transfer.take(container.decode(Int.self))
        let limit = try container.decode(Int.self)
        self.init(readFD: read, writeFD: write, maximumMessageSize: limit)
    }
}
