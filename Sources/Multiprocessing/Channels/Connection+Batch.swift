/// Messages gathered in memory and written to a ``Connection`` together.
///
/// One `write` per message costs a system call and, when the receiver
/// sleeps, a wakeup; gathering small messages and writing them in batches of
/// up to 64 KiB moves an order of magnitude more messages per second. Get one
/// from ``Connection/withBatch(_:)``.
public struct ConnectionBatch: ~Copyable {
    private let connection: Connection
    private var buffer: [UInt8]
    private static let capacity = 64 * 1024

    init(connection: Connection) {
        self.connection = connection
        buffer = []
        buffer.reserveCapacity(Self.capacity)
    }

    /// Adds a value to the batch; it is written when the batch fills or ends.
    ///
    /// - Throws: `.encodingFailed` when the value cannot be encoded (the batch
    ///   keeps the messages added before); `.messageTooLarge` above the
    ///   connection's maximum message size; what a write throws when the
    ///   batch was full and had to be written.
    public mutating func send<T: Encodable>(_ value: T) throws {
        let start = buffer.count
        buffer += [0, 0, 0, 0]
        do {
            try WireEncoder().encode(value, into: &buffer)
        } catch {
            buffer.removeSubrange(start...)
            throw error
        }
        let length = buffer.count - start - 4
        do {
            try connection.checkSendable(length)
        } catch {
            buffer.removeSubrange(start...)
            throw error
        }
        if length >= Frame.longLength {
            let payload = Array(buffer[(start + 4)...])
            buffer.removeSubrange(start...)
            try flush()
            try payload.withUnsafeBytes { try connection.sendBytes($0) }
            return
        }
        buffer.withUnsafeMutableBytes { Frame.writeHeader(length: length, to: $0.baseAddress! + start) }
        if buffer.count >= Self.capacity { try flush() }
    }

    /// Adds raw bytes as one message; it is written when the batch fills or ends.
    public mutating func sendBytes(_ bytes: UnsafeRawBufferPointer) throws {
        try connection.checkSendable(bytes.count)
        if bytes.count > Self.capacity / 2 {
            try flush()
            try connection.sendBytes(bytes)
            return
        }
        let start = buffer.count
        buffer += [0, 0, 0, 0]
        buffer.withUnsafeMutableBytes { Frame.writeHeader(length: bytes.count, to: $0.baseAddress! + start) }
        buffer.append(contentsOf: bytes)
        if buffer.count >= Self.capacity { try flush() }
    }

    /// Adds raw bytes as one message.
    public mutating func sendBytes(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { try sendBytes($0) }
    }

    /// Writes the messages gathered so far.
    public mutating func flush() throws {
        guard !buffer.isEmpty else { return }
        defer { buffer.removeAll(keepingCapacity: true) }
        try buffer.withUnsafeBytes { try connection.sendRaw($0) }
    }
}

extension Connection {
    /// Sends many messages with few system calls.
    ///
    /// Messages added to the batch are written when 64 KiB have gathered and
    /// when `body` returns (or throws), in order, each as its own message for
    /// the receiver. Use it to stream many small messages:
    ///
    /// ```swift
    /// try connection.withBatch { batch in
    ///     for item in items { try batch.send(item) }
    /// }
    /// ```
    ///
    /// - Parameter body: Adds messages to the batch.
    /// - Returns: What `body` returns.
    /// - Throws: What `body` throws (after the messages it added were
    ///   written), or what writing throws (`.endOfStream` when the receiver is gone).
    public func withBatch<R>(_ body: (inout ConnectionBatch) throws -> R) throws -> R {
        var batch = ConnectionBatch(connection: self)
        let result: R
        do {
            result = try body(&batch)
        } catch {
            try batch.flush()
            throw error
        }
        try batch.flush()
        return result
    }
}
