#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A file descriptor this value owns: it is closed when the value ends,
/// unless ``release()`` hands it over first.
///
/// `Connection.receiveDescriptor()` returns one, so a received descriptor
/// is never leaked by forgetting it.
///
/// ```swift
/// let received = try connection.receiveDescriptor()
/// write(received.rawValue, bytes, count)
/// // closed here, at the end of `received`'s scope
/// ```
public struct OwnedDescriptor: ~Copyable, Sendable {
    /// The descriptor number; valid while this value lives.
    public let rawValue: Int32

    /// Takes ownership of `rawValue`, which this value will close.
    public init(adopting rawValue: Int32) {
        self.rawValue = rawValue
    }

    deinit { Platform.close(rawValue) }

    /// Closes the descriptor now. The corresponding C function is `close`.
    public consuming func close() {}

    /// Gives up ownership: the caller must close the returned descriptor.
    public consuming func release() -> Int32 {
        let fd = rawValue
        discard self
        return fd
    }
}

/// A descriptor inside a message: its number travels beside the bytes.
private struct DescriptorMessage: Codable, Sendable {
    var fd: Int32

    init(fd: Int32) { self.fd = fd }

    func encode(to encoder: any Encoder) throws {
        guard let transfer = encoder.userInfo[.descriptorTransfer] as? DescriptorTransfer else {
            throw MultiprocessingError(.encodingFailed, "a descriptor travels only over a socket connection")
        }
        var container = encoder.singleValueContainer()
        try container.encode(transfer.add(fd))
    }

    init(from decoder: any Decoder) throws {
        guard let transfer = decoder.userInfo[.descriptorTransfer] as? DescriptorTransfer else {
            throw MultiprocessingError(.decodingFailed, "a descriptor arrives only over a socket connection")
        }
        fd = try transfer.take(decoder.singleValueContainer().decode(Int.self))
    }
}

extension Connection {
    /// Makes a connected pair over a Unix socket, whose ends can also carry
    /// file descriptors (Python's `Pipe()`, which is a socket pair too).
    ///
    /// A pair from ``pipe(duplex:maximumMessageSize:)`` moves small messages
    /// about twice as fast; use this one when descriptors must travel, with
    /// ``sendDescriptor(_:)`` or inside values. The corresponding C function
    /// is `socketpair`.
    ///
    /// - Parameter maximumMessageSize: The largest message either end sends
    ///   or receives; 1 GiB by default.
    /// - Returns: The two ends, both duplex.
    /// - Throws: `.systemCall` when the sockets cannot be made;
    ///   `.invalidArgument` for a `maximumMessageSize` below 1.
    public static func socketPair(
        maximumMessageSize: Int = Connection.defaultMaximumMessageSize
    ) throws -> (Connection, Connection) {
        _ = try validLimit(maximumMessageSize)
        let fds = try Platform.makeStreamSocketPair()
        return (
            Connection(readFD: fds[0], writeFD: fds[0], maximumMessageSize: maximumMessageSize),
            Connection(readFD: fds[1], writeFD: fds[1], maximumMessageSize: maximumMessageSize)
        )
    }

    /// Sends a file descriptor: the receiver gets its own descriptor for the
    /// same open file, pipe or socket (Python's `multiprocessing.reduction.send_handle`).
    ///
    /// The descriptor travels with SCM_RIGHTS; this process keeps `fd` and
    /// still closes it itself.
    ///
    /// - Parameter fd: An open descriptor.
    /// - Throws: `.invalidArgument` on an end that does not
    ///   ``carriesDescriptors`` (a pipe) or for a descriptor that is not
    ///   open; `.endOfStream` when the other end is closed.
    public func sendDescriptor(_ fd: Int32) throws {
        try checkCarriesDescriptors()
        guard Platform.isOpen(fd) else {
            throw MultiprocessingError(.invalidArgument, "descriptor \(fd) is not open in this process, so it cannot be sent")
        }
        try send(DescriptorMessage(fd: fd))
    }

    /// Receives a file descriptor sent with ``sendDescriptor(_:)`` (Python's
    /// `multiprocessing.reduction.recv_handle`).
    ///
    /// - Returns: The descriptor, owned by the caller: it is closed when the
    ///   returned value ends, or call ``OwnedDescriptor/release()`` to keep it.
    ///   It is close-on-exec.
    /// - Throws: `.invalidArgument` on an end that does not
    ///   ``carriesDescriptors``; `.decodingFailed` when the next message is
    ///   not a descriptor (it is consumed); `.endOfStream` when the other end closed.
    public func receiveDescriptor() throws -> OwnedDescriptor {
        try checkCarriesDescriptors()
        return OwnedDescriptor(adopting: try receive(DescriptorMessage.self).fd)
    }

    /// Receives a file descriptor without blocking a thread of the cooperative pool.
    ///
    /// See `receiveDescriptor()`.
    public func receiveDescriptor() async throws -> OwnedDescriptor {
        try checkCarriesDescriptors()
        return OwnedDescriptor(adopting: try await receive(DescriptorMessage.self).fd)
    }

    private func checkCarriesDescriptors() throws {
        guard carriesDescriptors else {
            throw MultiprocessingError(
                .invalidArgument,
                "descriptors travel only over a socket connection, and this end is a pipe: make the pair with "
                    + "Connection.socketPair(), or connect with Listener and Connection.connect(to:)")
        }
    }
}
