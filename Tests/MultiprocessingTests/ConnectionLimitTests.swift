import Testing
@testable import Multiprocessing

extension ProcessSuites {
    @Suite("Connection message limits", .serialized, .timeLimit(.minutes(2)))
    struct ConnectionLimitTests {
        @Test("a child's forged header claiming 1 TiB is refused, naming both sizes, and the end says it is unreadable")
        func forgedHugeHeader() async throws {
            let (mine, theirs) = try Connection.pipe()
            #expect(mine.maximumMessageSize == Connection.defaultMaximumMessageSize)
            let child = try ChildProcess(ForgeFrameHeader(connection: theirs, claimed: 1 << 40), startMethod: .spawn)
            try child.start()
            theirs.close()
            #expect(mine.state == .open)
            // Allocating the claimed terabyte would crash this process.
            let error = #expect(throws: MultiprocessingError.self) { _ = try mine.receiveBytes() }
            #expect(error?.code == .messageTooLarge)
            #expect(error?.message.contains("\(1 << 40)") == true)
            #expect(error?.message.contains("\(Connection.defaultMaximumMessageSize)") == true)
            #expect(mine.state == .unreadable)
            let again = #expect(throws: MultiprocessingError.self) { _ = try mine.receive(String.self) }
            #expect(again?.code == .messageTooLarge)
            #expect(again?.message.contains("no longer receive") == true)
            // Sending still works: the child gets it and exits normally.
            try mine.send("still sending")
            try await child.join()
            #expect(child.exitCode == 0)
            mine.close()
            #expect(mine.state == .closed)
        }

        @Test("a lowered limit refuses a forged short header just above it")
        func loweredLimitShortHeader() async throws {
            let (mine, theirs) = try Connection.pipe()
            try mine.setMaximumMessageSize(1000)
            #expect(mine.maximumMessageSize == 1000)
            let child = try ChildProcess(ForgeFrameHeader(connection: theirs, claimed: 1001), startMethod: .spawn)
            try child.start()
            theirs.close()
            let error = #expect(throws: MultiprocessingError.self) { _ = try mine.receiveBytes() }
            #expect(error?.code == .messageTooLarge)
            #expect(error?.message.contains("1001 bytes") == true && error?.message.contains("of 1000") == true)
            #expect(mine.state == .unreadable)
            try mine.send("done")
            try await child.join()
            #expect(child.exitCode == 0)
        }

        @Test("a limit set on the pair travels to the child, which refuses to send past it")
        func limitTravelsToChild() async throws {
            let (reader, writer) = try Connection.pipe(duplex: false, maximumMessageSize: 4096)
            let child = try ChildProcess(SendSizes(connection: writer, sizes: [0, 4096, 10]), startMethod: .spawn)
            try child.start()
            writer.close()
            #expect(try await reader.receiveBytes().count == 0)
            #expect(try await reader.receiveBytes().count == 4096)
            #expect(try await reader.receiveBytes().count == 10)
            try await child.join()
            #expect(try child.value == "messageTooLarge")
            #expect(reader.state == .open)
            let end = await #expect(throws: MultiprocessingError.self) { _ = try await reader.receiveBytes() }
            #expect(end?.code == .endOfStream)
        }

        @Test("a message above the limit fits into a caller's buffer only if it is within the limit")
        func limitAppliesToBufferReceive() throws {
            let (a, b) = try Connection.pipe()
            try a.setMaximumMessageSize(10)
            try b.sendBytes([UInt8](repeating: 1, count: 10))
            var buffer = [UInt8](repeating: 0, count: 100)
            #expect(try buffer.withUnsafeMutableBytes { try a.receiveBytes(into: $0) } == 10)
            try b.setMaximumMessageSize(100)
            try b.sendBytes([UInt8](repeating: 1, count: 11))
            let error = #expect(throws: MultiprocessingError.self) {
                _ = try buffer.withUnsafeMutableBytes { try a.receiveBytes(into: $0) }
            }
            #expect(error?.code == .messageTooLarge)
            #expect(a.state == .unreadable)
        }

        @Test("sends past the limit, plain and batched, write nothing and keep the connection open")
        func sendPastLimit() throws {
            let (a, b) = try Connection.pipe(maximumMessageSize: 64)
            let error = #expect(throws: MultiprocessingError.self) { try a.sendBytes([UInt8](repeating: 0, count: 65)) }
            #expect(error?.code == .messageTooLarge)
            #expect(error?.message.contains("65 bytes") == true)
            let valueError = #expect(throws: MultiprocessingError.self) { try a.send(String(repeating: "x", count: 100)) }
            #expect(valueError?.code == .messageTooLarge)
            let batchError = #expect(throws: MultiprocessingError.self) {
                try a.withBatch { batch in
                    try batch.send(1)
                    try batch.send([UInt8](repeating: 0, count: 100))
                }
            }
            #expect(batchError?.code == .messageTooLarge)
            #expect(try b.receive(Int.self) == 1)
            #expect(try b.poll() == false)
            #expect(a.state == .open && b.state == .open)
        }

        @Test("a limit below one byte is refused")
        func invalidLimit() throws {
            let (a, _) = try Connection.pipe()
            #expect(throws: MultiprocessingError.self) { try a.setMaximumMessageSize(0) }
            let error = #expect(throws: MultiprocessingError.self) { _ = try Connection.pipe(maximumMessageSize: -5) }
            #expect(error?.code == .invalidArgument)
            #expect(a.maximumMessageSize == Connection.defaultMaximumMessageSize)
        }
    }
}
