#if canImport(Glibc)
    import Glibc
#endif
import Testing
@testable import Multiprocessing

@Suite("SHA-256 and HMAC-SHA256")
struct DigestTests {
    private func hex(_ bytes: [UInt8]) -> String { bytes.map { String(format: "%02x", $0) }.joined() }

    @Test("FIPS 180-4 vectors")
    func sha256Vectors() {
        #expect(hex(SHA256.hash([])) == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        #expect(hex(SHA256.hash(Array("abc".utf8))) == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        #expect(
            hex(SHA256.hash(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)))
                == "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        #expect(
            hex(SHA256.hash([UInt8](repeating: UInt8(ascii: "a"), count: 1_000_000)))
                == "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0")
        // 55, 56 and 64 bytes: the padding's edge cases.
        #expect(
            hex(SHA256.hash([UInt8](repeating: UInt8(ascii: "a"), count: 64)))
                == "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb")
    }

    @Test("RFC 4231 vectors, and an empty key")
    func hmacVectors() {
        #expect(
            hex(SHA256.hmac(key: [UInt8](repeating: 0x0b, count: 20), message: Array("Hi There".utf8)))
                == "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        #expect(
            hex(SHA256.hmac(key: Array("Jefe".utf8), message: Array("what do ya want for nothing?".utf8)))
                == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843")
        #expect(
            hex(
                SHA256.hmac(
                    key: [UInt8](repeating: 0xaa, count: 131),
                    message: Array("Test Using Larger Than Block-Size Key - Hash Key First".utf8)))
                == "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54")
        #expect(
            hex(SHA256.hmac(key: [], message: []))
                == "b613679a0814d9ec772f95d778c35fc5ff1697c493715653c6c712144292c5ad")
        #expect(SHA256.digestsEqual([1, 2, 3], [1, 2, 3]) && !SHA256.digestsEqual([1, 2, 3], [1, 2, 4]))
    }
}

extension ProcessSuites {
    @Suite("Listeners and clients", .serialized, .timeLimit(.minutes(2)))
    struct ListenerTests {
        static func uniqueName(_ label: String) -> String { "swift-mp-test-\(getpid())-\(label)-\(UInt32.random(in: 0...UInt32.max))" }

        static func addresses() -> [ConnectionAddress] {
            [
                .abstract(uniqueName("abstract")),
                .unixPath("/tmp/\(uniqueName("path")).sock"),
                .tcp(host: "127.0.0.1", port: 0),
            ]
        }

        @Test("a spawned process connects with the key, for every kind of address", arguments: addresses())
        func connectsWithKey(address: ConnectionAddress) async throws {
            let key = Array("shared secret".utf8)
            let listener = try Listener(address: address, authenticationKey: key)
            if case .tcp(_, let port) = listener.address { #expect(port > 0) }
            let child = try ChildProcess(ConnectAndGreet(address: listener.address, key: key), startMethod: .spawn)
            try child.start()
            let connection = try await listener.accept()
            let greeting: String = try await connection.receive()
            #expect(greeting == "hello from \(child.pid!)")
            try connection.send("welcome, \(child.pid!)")
            try await child.join()
            let outcome = try child.value
            #expect(outcome.reply == "welcome, \(child.pid!)")
            #expect(outcome.leakedDescriptors == 0)
            let isUnix = if case .tcp = address { false } else { true }
            #expect(outcome.carriesDescriptors == isUnix && connection.carriesDescriptors == isUnix)
            connection.close()
            listener.close()
            if case .unixPath(let path) = address { #expect(access(path, F_OK) != 0) }
        }

        @Test("an empty key is a key: the challenge runs with it and passes")
        func emptyKey() async throws {
            let listener = try Listener(address: .abstract(Self.uniqueName("empty")), authenticationKey: [])
            let child = try ChildProcess(ConnectAndGreet(address: listener.address, key: []), startMethod: .spawn)
            try child.start()
            let connection = try await listener.accept()
            #expect(try await connection.receive(String.self).hasPrefix("hello from"))
            try connection.send("ok")
            try await child.join()
            #expect(try child.value.reply == "ok")
        }

        @Test("without keys on either side the connection is made at once")
        func noKeys() async throws {
            let listener = try Listener(address: .tcp(host: "127.0.0.1", port: 0))
            let child = try ChildProcess(ConnectAndGreet(address: listener.address, key: nil), startMethod: .spawn)
            try child.start()
            let connection = try await listener.accept()
            #expect(try await connection.receive(String.self).hasPrefix("hello from"))
            try connection.send("ok")
            try await child.join()
            #expect(try child.value.reply == "ok")
        }

        @Test("a client with the wrong key: both sides fail with .authenticationFailed and close their sockets")
        func wrongKeyClient() async throws {
            let listener = try Listener(address: .abstract(Self.uniqueName("wrong")), authenticationKey: Array("right".utf8))
            let before = openDescriptors().count
            let child = try ChildProcess(
                ConnectAndGreet(address: listener.address, key: Array("wrong".utf8)), startMethod: .spawn)
            try child.start()
            let error = await #expect(throws: MultiprocessingError.self) { _ = try await listener.accept() }
            #expect(error?.code == .authenticationFailed)
            try await child.join()
            let outcome = try child.value
            #expect(outcome.errorCode == "authenticationFailed")
            #expect(outcome.leakedDescriptors == 0)
            #expect(openDescriptors().count == before)
            // The listener takes the next client.
            let second = try ChildProcess(
                ConnectAndGreet(address: listener.address, key: Array("right".utf8)), startMethod: .spawn)
            try second.start()
            let connection = try await listener.accept()
            _ = try await connection.receive(String.self)
            try connection.send("ok")
            try await second.join()
            #expect(try second.value.reply == "ok")
        }

        @Test("a listener in another process refuses this process's wrong key; both sides close their sockets")
        func wrongKeyListener() async throws {
            let address = ConnectionAddress.unixPath("/tmp/\(Self.uniqueName("remote")).sock")
            let (ready, childReady) = try Connection.pipe()
            let child = try ChildProcess(
                ListenAndAcceptOnce(address: address, key: Array("theirs".utf8), ready: childReady), startMethod: .spawn)
            try child.start()
            childReady.close()
            #expect(try await ready.receive(String.self) == "listening")
            let before = openDescriptors().count
            let error = #expect(throws: MultiprocessingError.self) {
                _ = try Connection.connect(to: address, authenticationKey: Array("mine".utf8))
            }
            #expect(error?.code == .authenticationFailed)
            #expect(openDescriptors().count == before)
            try await child.join()
            #expect(try child.value == "authenticationFailed, leaked 0")
        }

        @Test("a client that never answers the challenge fails the accept when the handshake's time is up")
        func silentClient() async throws {
            let listener = try Listener(
                address: .abstract(Self.uniqueName("silent")), authenticationKey: [1, 2, 3],
                authenticationTimeout: .milliseconds(300))
            let client = try Connection.connect(to: listener.address)
            let error = await #expect(throws: MultiprocessingError.self) { _ = try await listener.accept() }
            #expect(error?.code == .authenticationFailed)
            #expect(error?.message.contains("in time") == true)
            // The challenge arrived, then the listener closed the socket.
            #expect(try await client.receiveBytes().starts(with: Array("#CHALLENGE#".utf8)))
            let end = await #expect(throws: MultiprocessingError.self) { _ = try await client.receiveBytes() }
            #expect(end?.code == .endOfStream)
        }

        @Test("closing a listener ends an accept that waits, with .closed")
        func closeWakesAccept() async throws {
            let listener = try Listener(address: .abstract(Self.uniqueName("close")))
            let waiter = Task { try await listener.accept() }
            // Whether the accept is already waiting or not, it must end with .closed.
            try await Task.sleep(for: .milliseconds(50))
            listener.close()
            let error = await #expect(throws: MultiprocessingError.self) { _ = try await waiter.value }
            #expect(error?.code == .closed)
        }

        @Test("unusable addresses are refused with .invalidArgument; nothing listening is a system error")
        func badAddresses() throws {
            for address in [
                ConnectionAddress.abstract("nul\0inside"), .unixPath("/tmp/nul\0inside"), .unixPath(""),
                .unixPath("/tmp/" + String(repeating: "x", count: 200)), .tcp(host: "localhost", port: 1),
                .tcp(host: "127.0.0.1", port: 70000),
            ] {
                let error = #expect(throws: MultiprocessingError.self) { _ = try Listener(address: address) }
                #expect(error?.code == .invalidArgument, "\(address)")
            }
            let nothing = #expect(throws: MultiprocessingError.self) {
                _ = try Connection.connect(to: .abstract(Self.uniqueName("nobody")))
            }
            #expect(nothing?.code == .systemCall && nothing?.errno == ECONNREFUSED)
            let listener = try Listener(address: .abstract(Self.uniqueName("taken")))
            let taken = #expect(throws: MultiprocessingError.self) { _ = try Listener(address: listener.address) }
            #expect(taken?.errno == EADDRINUSE)
        }
    }
}
