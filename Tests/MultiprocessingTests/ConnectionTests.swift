#if canImport(Glibc)
    import Glibc
#endif
import Testing
@testable import Multiprocessing

extension ProcessSuites {
    @Suite("Connections", .serialized, .timeLimit(.minutes(1)))
    struct ConnectionTests {
        @Test("a duplex pair carries values and bytes both ways")
        func duplexInProcess() throws {
            let (a, b) = try Connection.pipe()
            try a.send(Greeting(text: "hi", numbers: [1, 2]))
            #expect(try b.receive(Greeting.self) == Greeting(text: "hi", numbers: [1, 2]))
            try b.sendBytes([1, 2, 3])
            #expect(try a.receiveBytes() == [1, 2, 3])
            try b.sendBytes([])
            #expect(try a.receiveBytes() == [])
        }

        @Test("a one-way pair receives on the first end and sends on the second")
        func oneWay() throws {
            let (reader, writer) = try Connection.pipe(duplex: false)
            try writer.send(5)
            #expect(try reader.receive(Int.self) == 5)
            let error = #expect(throws: MultiprocessingError.self) { try reader.send(1) }
            #expect(error?.code == .invalidArgument)
            #expect(throws: MultiprocessingError.self) { _ = try writer.receiveBytes() }
        }

        @Test("poll with a timeout waits for a message", .timeLimit(.minutes(1)))
        func pollTimeout() throws {
            let (a, b) = try Connection.pipe()
            let start = ContinuousClock.now
            #expect(try a.poll(timeout: .milliseconds(50)) == false)
            #expect(ContinuousClock.now - start >= .milliseconds(45))
            try b.send("x")
            #expect(try a.poll(timeout: .seconds(5)))
            #expect(try a.receive(String.self) == "x")
            #expect(try a.poll() == false)
        }

        @Test("closing one end gives the other a clear end-of-stream error")
        func endOfStream() throws {
            let (a, b) = try Connection.pipe()
            b.close()
            let error = #expect(throws: MultiprocessingError.self) { _ = try a.receiveBytes() }
            #expect(error?.code == .endOfStream)
            let sendError = #expect(throws: MultiprocessingError.self) { try a.send(1) }
            #expect(sendError?.code == .endOfStream)
            let closedError = #expect(throws: MultiprocessingError.self) { try b.send(1) }
            #expect(closedError?.code == .closed)
        }

        @Test("a connection handed to a child inside a task value works, for every start method")
        func connectionToChild() async throws {
            for method in [StartMethod.spawn, .forkserver] {
                let (mine, theirs) = try Connection.pipe()
                let child = try ChildProcess(EchoBytes(connection: theirs), startMethod: method)
                try child.start()
                theirs.close()
                for size in [0, 8, 100_000, 3_000_000] {
                    let message = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31) }
                    try mine.sendBytes(message)
                    #expect(try await mine.receiveBytes() == message)
                }
                mine.close()
                try await child.join()
                #expect(child.exitCode == 0)
            }
        }

        @Test("values stream from a child until it closes its end")
        func streamFromChild() async throws {
            let (mine, theirs) = try Connection.pipe(duplex: false)
            let child = try ChildProcess(SendValues(connection: theirs, count: 1000))
            try child.start()
            theirs.close()
            var received = 0
            while true {
                do {
                    let value: Greeting = try await mine.receive()
                    #expect(value.numbers == [received])
                    received += 1
                } catch let error as MultiprocessingError where error.code == .endOfStream {
                    break
                }
            }
            #expect(received == 1000)
            try await child.join()
        }

        @Test("a frame that claims more than the limit fails without allocating")
        func lyingFrameHeader() throws {
            let (a, b) = try Connection.pipe()
            var header: [UInt8] = [0xFF, 0xFF, 0xFF, 0xFF]
            header += withUnsafeBytes(of: UInt64(1 << 50).littleEndian, Array.init)
            try header.withUnsafeBytes { try Platform.writeAll(b.writeFD, $0) }
            let error = #expect(throws: MultiprocessingError.self) { _ = try a.receiveBytes() }
            #expect(error?.code == .messageTooLarge)
        }

        @Test("a truncated frame ends with a clear error, not a hang")
        func truncatedFrame() throws {
            let (a, b) = try Connection.pipe()
            let bytes: [UInt8] = [100, 0, 0, 0, 1, 2, 3]
            try bytes.withUnsafeBytes { try Platform.writeAll(b.writeFD, $0) }
            b.close()
            let error = #expect(throws: MultiprocessingError.self) { _ = try a.receiveBytes() }
            #expect(error?.code == .endOfStream)
            #expect(error?.message.contains("middle of a message") == true)
        }

        @Test("a message of another type gives a typed decoding error")
        func wrongType() throws {
            let (a, b) = try Connection.pipe()
            try b.send("not a number, and long enough to be noticed")
            let error = #expect(throws: MultiprocessingError.self) { _ = try a.receive(Greeting.self) }
            #expect(error?.code == .decodingFailed)
        }

        @Test("a connection cannot be sent as a plain value")
        func connectionNotSendable() throws {
            let (a, b) = try Connection.pipe()
            let error = #expect(throws: MultiprocessingError.self) { try a.send(b) }
            #expect(error?.code == .encodingFailed)
        }

        @Test("a batch delivers every message, in order, each as its own message")
        func batchKeepsMessages() async throws {
            let (mine, theirs) = try Connection.pipe(duplex: false)
            let child = try ChildProcess(SendBatched(connection: theirs, count: 50_000))
            try child.start()
            theirs.close()
            for index in 0..<50_000 {
                let value: Int = try await mine.receive()
                if value != index {
                    Issue.record("message \(index) arrived as \(value)")
                    break
                }
            }
            #expect(try await mine.receiveBytes() == [UInt8](repeating: 9, count: 100_000))
            try await child.join()
            #expect(child.exitCode == 0)
        }

        @Test("a batch whose body throws still writes the messages it added")
        func batchFlushesOnThrow() throws {
            let (reader, writer) = try Connection.pipe(duplex: false)
            struct Stop: Error {}
            #expect(throws: Stop.self) {
                try writer.withBatch { batch in
                    try batch.send("first")
                    try batch.send("second")
                    throw Stop()
                }
            }
            #expect(try reader.receive(String.self) == "first")
            #expect(try reader.receive(String.self) == "second")
        }
    }
}
