#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import Synchronization

/// Where a ``Listener`` listens and a client connects (the addresses of
/// Python's `multiprocessing.connection`).
public enum ConnectionAddress: Sendable, Hashable, Codable, CustomStringConvertible {
    /// A Unix socket at a path in the file system (Python's `AF_UNIX`
    /// address). The listener makes the socket file and removes it when closed.
    case unixPath(String)
    /// A Unix socket in Linux's abstract namespace: no file, gone with the
    /// last socket (Python's `AF_UNIX` address that starts with a NUL byte).
    case abstract(String)
    /// TCP on an IPv4 or IPv6 address, written as digits (`"127.0.0.1"`,
    /// `"::1"`; names are not looked up). Port 0 lets the system choose:
    /// ``Listener/address`` then holds the port it chose (Python's `AF_INET`).
    case tcp(host: String, port: Int)

    public var description: String {
        switch self {
        case .unixPath(let path): return path
        case .abstract(let name): return "@\(name)"
        case .tcp(let host, let port): return host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
        }
    }
}

/// Accepts connections from other processes, related or not (Python's
/// `multiprocessing.connection.Listener`).
///
/// Any process that knows the address connects with
/// ``Connection/connect(to:authenticationKey:authenticationTimeout:maximumMessageSize:)``: a
/// program started by someone else, a child started with any start method.
/// With an authentication key, each side proves to the other that it holds
/// the same key before the connection is handed out: each sends a random
/// challenge and checks the HMAC-SHA256 of it that comes back, as Python does.
///
/// ```swift
/// let listener = try Listener(address: .abstract("my-service"), authenticationKey: key)
/// let connection = try await listener.accept()
/// let request: Request = try await connection.receive()
///
/// // in another process:
/// let connection = try Connection.connect(to: .abstract("my-service"), authenticationKey: key)
/// ```
///
/// - Important: The key is a shared secret, not encryption: the messages
///   that follow travel in the clear. Over TCP, listen on a loopback address
///   unless the network is trusted.
public final class Listener: @unchecked Sendable {
    // @unchecked: `fd` is set once; closing is guarded by `closed`.
    private let fd: Int32
    private let closed = Atomic(false)
    private let authenticationKey: [UInt8]?
    private let maximumMessageSize: Int
    private let authenticationTimeout: Duration
    /// The address connections reach, with the port the system chose for TCP port 0.
    public let address: ConnectionAddress

    /// Starts listening.
    ///
    /// - Parameters:
    ///   - address: Where to listen.
    ///   - backlog: How many connections may wait to be accepted.
    ///   - authenticationKey: The shared secret clients must prove they hold
    ///     (an empty key is allowed, and is still checked); `nil`: none, as
    ///     with Python's `authkey=None`.
    ///   - authenticationTimeout: How long the handshake of one connection
    ///     may take before `accept()` gives up on it.
    ///   - maximumMessageSize: The limit of the connections accepted
    ///     (``Connection/maximumMessageSize``).
    /// - Throws: `.invalidArgument` for an address that cannot be used (a
    ///   path that is too long, a name with a NUL byte, a host that is not an
    ///   address, a port out of range); `.systemCall` when the socket cannot
    ///   be made or bound (`EADDRINUSE`: another socket has the address, or a
    ///   stale socket file is in the way).
    public init(
        address: ConnectionAddress, backlog: Int = 16, authenticationKey: [UInt8]? = nil,
        authenticationTimeout: Duration = .seconds(30),
        maximumMessageSize: Int = Connection.defaultMaximumMessageSize
    ) throws {
        self.maximumMessageSize = try Connection.validLimit(maximumMessageSize)
        self.authenticationKey = authenticationKey
        self.authenticationTimeout = authenticationTimeout
        var socketAddress = try SocketAddress(address)
        let fd = try socketAddress.makeSocket()
        do {
            if case .tcp = address {
                var one: Int32 = 1
                _ = setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
            }
            guard socketAddress.withPointer({ bind(fd, $0, $1) }) == 0 else {
                throw Platform.error("bind to \(address)")
            }
            guard listen(fd, Int32(clamping: max(backlog, 1))) == 0 else { throw Platform.error("listen on \(address)") }
            Platform.setNonBlocking(fd)
            self.address = try socketAddress.bound(fd, requested: address)
        } catch {
            Platform.close(fd)
            throw error
        }
        self.fd = fd
    }

    deinit { close() }

    /// Whether ``close()`` was called.
    public var isClosed: Bool { closed.load(ordering: .acquiring) }

    /// Stops listening; a path's socket file is removed. Closing twice does
    /// nothing. Connections accepted before stay open.
    public func close() {
        guard closed.compareExchange(expected: false, desired: true, ordering: .acquiringAndReleasing).exchanged
        else { return }
        // Wakes an accept that waits in another thread.
        _ = shutdown(fd, Int32(SHUT_RDWR))
        Platform.close(fd)
        if case .unixPath(let path) = address { _ = unlink(path) }
    }

    /// Waits for the next connection and authenticates it (Python's `accept()`).
    ///
    /// - Returns: A connected end; it ``Connection/carriesDescriptors`` for a Unix socket.
    /// - Throws: `.authenticationFailed` when the client does not prove it
    ///   holds the key, refuses this side's proof, or does not finish the
    ///   handshake in time (its socket is closed, and the listener takes the
    ///   next client at the next call); `.closed` once the listener is closed.
    public func accept() throws -> Connection {
        try authenticate(try acceptSocket(deadline: nil)!)
    }

    /// Waits for the next connection without blocking a cooperative thread.
    ///
    /// See `accept()`. Cancelling the calling task ends the wait with `CancellationError`.
    public func accept() async throws -> Connection {
        while true {
            try Task.checkCancellation()
            let sliceEnd = ContinuousClock.now + .milliseconds(100)
            let accepted = try await BlockingThreads.run { () -> Connection? in
                guard let connection = try self.acceptSocket(deadline: sliceEnd) else { return nil }
                return try self.authenticate(connection)
            }
            if let accepted { return accepted }
        }
    }

    /// The next accepted socket as a connection, or `nil` at `deadline`.
    private func acceptSocket(deadline: ContinuousClock.Instant?) throws -> Connection? {
        while true {
            guard !isClosed else { throw MultiprocessingError(.closed, "the listener on \(address) is closed") }
            let client = systemAccept(fd)
            if client >= 0 {
                Platform.setCloseOnExec(client)
                // Some systems hand the listener's O_NONBLOCK to the accepted socket.
                Platform.setNonBlocking(client, false)
                if case .tcp = address {
                    var one: Int32 = 1
                    _ = setsockopt(client, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
                }
                return Connection(readFD: client, writeFD: client, maximumMessageSize: maximumMessageSize)
            }
            switch errno {
            case EINTR, ECONNABORTED: continue
            case EAGAIN, EWOULDBLOCK:
                if try !Platform.waitReadable([fd], deadline: deadline)[0], deadline.map({ $0 <= .now }) ?? false {
                    return nil
                }
            case EINVAL where isClosed, EBADF where isClosed:
                throw MultiprocessingError(.closed, "the listener on \(address) is closed")
            default:
                throw Platform.error("accept on \(address)")
            }
        }
    }

    private func authenticate(_ connection: Connection) throws -> Connection {
        guard let key = authenticationKey else { return connection }
        try Handshake(connection: connection, key: key, timeout: authenticationTimeout).run(challengeFirst: true)
        return connection
    }
}

extension Connection {
    /// Connects to a ``Listener`` (Python's `multiprocessing.connection.Client`).
    ///
    /// - Parameters:
    ///   - address: The listener's address.
    ///   - authenticationKey: The key the listener was given, `nil` when it has none.
    ///   - authenticationTimeout: How long the handshake may take.
    ///   - maximumMessageSize: This end's ``maximumMessageSize``.
    /// - Returns: A connected duplex end; it ``carriesDescriptors`` for a Unix socket.
    /// - Throws: `.authenticationFailed` when the keys differ, or the
    ///   listener does not finish the handshake in time (the socket is
    ///   closed); `.invalidArgument` for an address that cannot be used;
    ///   `.systemCall` when nothing listens there (`ECONNREFUSED`, `ENOENT`).
    public static func connect(
        to address: ConnectionAddress, authenticationKey: [UInt8]? = nil,
        authenticationTimeout: Duration = .seconds(30),
        maximumMessageSize: Int = Connection.defaultMaximumMessageSize
    ) throws -> Connection {
        let limit = try validLimit(maximumMessageSize)
        var socketAddress = try SocketAddress(address)
        let fd = try socketAddress.makeSocket()
        guard socketAddress.withPointer({ systemConnect(fd, $0, $1) }) == 0 else {
            let error = Platform.error("connect to \(address)")
            Platform.close(fd)
            throw error
        }
        if case .tcp = address {
            var one: Int32 = 1
            _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        let connection = Connection(readFD: fd, writeFD: fd, maximumMessageSize: limit)
        if let authenticationKey {
            try Handshake(connection: connection, key: authenticationKey, timeout: authenticationTimeout)
                .run(challengeFirst: false)
        }
        return connection
    }
}

/// Python's mutual challenge: each side sends `#CHALLENGE#{sha256}` and 40
/// random bytes, and expects back `{sha256}` and the HMAC-SHA256 of
/// everything after `#CHALLENGE#`, under the shared key; it then answers
/// `#WELCOME#` or `#FAILURE#`. The listener challenges first.
private struct Handshake {
    static let challenge = Array("#CHALLENGE#".utf8)
    static let welcome = Array("#WELCOME#".utf8)
    static let failure = Array("#FAILURE#".utf8)
    static let digestName = Array("{sha256}".utf8)
    /// The most a handshake message may hold.
    static let messageLimit = 256

    let connection: Connection
    let key: [UInt8]
    let deadline: ContinuousClock.Instant

    init(connection: Connection, key: [UInt8], timeout: Duration) {
        self.connection = connection
        self.key = key
        deadline = .now + timeout
    }

    /// Runs both halves; on any failure closes the connection and throws `.authenticationFailed`.
    func run(challengeFirst: Bool) throws {
        let limit = connection.maximumMessageSize
        do {
            try connection.setMaximumMessageSize(Self.messageLimit)
            if challengeFirst {
                try deliverChallenge()
                try answerChallenge()
            } else {
                try answerChallenge()
                try deliverChallenge()
            }
            try connection.setMaximumMessageSize(limit)
        } catch {
            connection.close()
            if let failure = error as? MultiprocessingError, failure.code == .authenticationFailed { throw failure }
            throw MultiprocessingError(
                .authenticationFailed, "the authentication handshake with the other process failed: \(error)")
        }
    }

    private func deliverChallenge() throws {
        var random = SystemRandomNumberGenerator()
        let message = Self.digestName + (0..<40).map { _ in UInt8.random(in: .min ... .max, using: &random) }
        try connection.sendBytes(Self.challenge + message)
        let response = try receive()
        let expected = Self.digestName + SHA256.hmac(key: key, message: message)
        guard SHA256.digestsEqual(response, expected) else {
            try? connection.sendBytes(Self.failure)
            throw MultiprocessingError(
                .authenticationFailed,
                "the other process did not answer the challenge with this authentication key's digest: "
                    + "the keys differ (or it has none)")
        }
        try connection.sendBytes(Self.welcome)
    }

    private func answerChallenge() throws {
        let message = try receive()
        guard message.starts(with: Self.challenge) else {
            throw MultiprocessingError(
                .authenticationFailed, "the other process sent no authentication challenge (does it use a key?)")
        }
        let challenge = Array(message.dropFirst(Self.challenge.count))
        guard challenge.starts(with: Self.digestName) else {
            throw MultiprocessingError(.authenticationFailed, "the challenge names a digest other than {sha256}")
        }
        try connection.sendBytes(Self.digestName + SHA256.hmac(key: key, message: challenge))
        let verdict = try receive()
        guard verdict == Self.welcome else {
            throw MultiprocessingError(
                .authenticationFailed, "the other process rejected this authentication key's digest: the keys differ")
        }
    }

    private func receive() throws -> [UInt8] {
        let left = deadline - .now
        guard left > .zero, try connection.poll(timeout: left) else {
            throw MultiprocessingError(.authenticationFailed, "the other process did not finish the handshake in time")
        }
        return try connection.receiveBytes()
    }
}

/// A socket address built from a ``ConnectionAddress``.
private struct SocketAddress {
    private var storage = sockaddr_storage()
    private var length: socklen_t = 0
    private var family: Int32 = AF_UNIX

    init(_ address: ConnectionAddress) throws {
        switch address {
        case .unixPath(let path):
            guard !path.isEmpty else { throw MultiprocessingError(.invalidArgument, "a socket path cannot be empty") }
            try self.init(unix: Array(path.utf8), abstract: false, shown: path)
        case .abstract(let name):
            #if os(Linux)
                try self.init(unix: Array(name.utf8), abstract: true, shown: "@" + name)
            #else
                throw MultiprocessingError(.invalidArgument, "abstract socket names exist only on Linux; use a path")
            #endif
        case .tcp(let host, let port):
            guard (0...65535).contains(port) else {
                throw MultiprocessingError(.invalidArgument, "a TCP port is between 0 and 65535, not \(port)")
            }
            self.init()
            var v4 = in_addr()
            var v6 = in6_addr()
            if inet_pton(AF_INET, host, &v4) == 1 {
                family = AF_INET
                withUnsafeMutableBytes(of: &storage) { raw in
                    let address = raw.baseAddress!.assumingMemoryBound(to: sockaddr_in.self)
                    address.pointee.sin_family = sa_family_t(AF_INET)
                    address.pointee.sin_port = in_port_t(UInt16(port).bigEndian)
                    address.pointee.sin_addr = v4
                }
                length = socklen_t(MemoryLayout<sockaddr_in>.size)
            } else if inet_pton(AF_INET6, host, &v6) == 1 {
                family = AF_INET6
                withUnsafeMutableBytes(of: &storage) { raw in
                    let address = raw.baseAddress!.assumingMemoryBound(to: sockaddr_in6.self)
                    address.pointee.sin6_family = sa_family_t(AF_INET6)
                    address.pointee.sin6_port = in_port_t(UInt16(port).bigEndian)
                    address.pointee.sin6_addr = v6
                }
                length = socklen_t(MemoryLayout<sockaddr_in6>.size)
            } else {
                throw MultiprocessingError(
                    .invalidArgument, "'\(host)' is not an IPv4 or IPv6 address (names such as localhost are not looked up)")
            }
        }
    }

    private init() {}

    private init(unix name: [UInt8], abstract: Bool, shown: String) throws {
        self.init()
        guard !name.contains(0) else {
            throw MultiprocessingError(.invalidArgument, "the socket address '\(shown)' contains a NUL byte")
        }
        let pathOffset = MemoryLayout<sockaddr_un>.offset(of: \.sun_path)!
        let capacity = MemoryLayout<sockaddr_un>.size - pathOffset
        // A path needs its terminating NUL; an abstract name its leading one.
        guard name.count + 1 <= capacity else {
            throw MultiprocessingError(
                .invalidArgument, "the socket address '\(shown)' is \(name.count) bytes, more than the \(capacity - 1) a Unix socket allows")
        }
        withUnsafeMutableBytes(of: &storage) { raw in
            raw.storeBytes(of: sa_family_t(AF_UNIX), toByteOffset: 0, as: sa_family_t.self)
            let start = pathOffset + (abstract ? 1 : 0)
            for (i, byte) in name.enumerated() { raw[start + i] = byte }
        }
        length = socklen_t(pathOffset + name.count + 1)
    }

    func makeSocket() throws -> Int32 {
        #if canImport(Glibc)
            let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        #else
            let type = SOCK_STREAM
        #endif
        let fd = socket(family, type, 0)
        guard fd >= 0 else { throw Platform.error("socket") }
        return fd
    }

    mutating func withPointer<R>(_ body: (UnsafePointer<sockaddr>, socklen_t) -> R) -> R {
        let length = length
        return withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { body($0, length) }
        }
    }

    /// The address as bound: for TCP port 0, with the port chosen.
    func bound(_ fd: Int32, requested: ConnectionAddress) throws -> ConnectionAddress {
        guard case .tcp(let host, 0) = requested else { return requested }
        var bound = sockaddr_storage()
        var size = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let result = withUnsafeMutablePointer(to: &bound) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &size) }
        }
        guard result == 0 else { throw Platform.error("getsockname") }
        let port = withUnsafeBytes(of: &bound) { raw -> UInt16 in
            family == AF_INET
                ? raw.load(as: sockaddr_in.self).sin_port : raw.load(as: sockaddr_in6.self).sin6_port
        }
        return .tcp(host: host, port: Int(UInt16(bigEndian: port)))
    }
}

private func systemAccept(_ fd: Int32) -> Int32 {
    #if canImport(Glibc)
        Glibc.accept(fd, nil, nil)
    #else
        Darwin.accept(fd, nil, nil)
    #endif
}

private func systemConnect(_ fd: Int32, _ address: UnsafePointer<sockaddr>, _ length: socklen_t) -> Int32 {
    #if canImport(Glibc)
        Glibc.connect(fd, address, length)
    #else
        Darwin.connect(fd, address, length)
    #endif
}
