#if canImport(Glibc)
    import Glibc
#endif
import Testing
@testable import Multiprocessing

extension ProcessSuites {
    @Suite("Sending file descriptors over connections", .serialized, .timeLimit(.minutes(2)))
    struct DescriptorPassingTests {
        @Test("a pipe's writing end sent to a child is written there; the parent reads to end-of-file",
              arguments: [StartMethod.spawn, .forkserver])
        func writingEndToChild(method: StartMethod) async throws {
            let (mine, theirs) = try Connection.socketPair()
            #expect(mine.carriesDescriptors && theirs.carriesDescriptors)
            let child = try ChildProcess(
                WriteIntoReceivedDescriptor(connection: theirs, text: "written by the child"), startMethod: method)
            try child.start()
            theirs.close()
            let pipe = try Platform.makePipe()
            try mine.sendDescriptor(pipe.write)
            // The child's copy is now the only writing end: end-of-file comes when it is closed there.
            Platform.close(pipe.write)
            #expect(try readToEnd(pipe.read) == "written by the child")
            Platform.close(pipe.read)
            try await child.join()
            #expect(child.exitCode == 0)
        }

        @Test("a child sends a pipe's reading end to its parent, who owns the descriptor it receives")
        func readingEndFromChild() async throws {
            let (mine, theirs) = try Connection.socketPair()
            let child = try ChildProcess(SendPipeReadingEnd(connection: theirs, text: "from the child"))
            try child.start()
            theirs.close()
            let before = openDescriptors().count
            do {
                let received = try await mine.receiveDescriptor()
                #expect(openDescriptors().count == before + 1)
                #expect(fcntl(received.rawValue, F_GETFD) & FD_CLOEXEC != 0)
                #expect(try readToEnd(received.rawValue) == "from the child")
            }
            // The received descriptor was closed at the end of its scope.
            #expect(openDescriptors().count == before)
            try await child.join()
            #expect(child.exitCode == 0)
        }

        @Test("a connection made after the child started travels inside a value over a socket pair")
        func connectionInsideValue() async throws {
            let (mine, theirs) = try Connection.socketPair()
            let child = try ChildProcess(EchoOnReceivedConnection(connection: theirs), startMethod: .spawn)
            try child.start()
            theirs.close()
            let (near, far) = try Connection.pipe()
            try mine.send(EchoOnReceivedConnection.Handoff(connection: far, label: "child"))
            far.close()
            try near.send("hello")
            #expect(try await near.receive(String.self) == "child: hello")
            try await child.join()
            #expect(child.exitCode == 0)
        }

        @Test("bytes, descriptors and values keep their order on one socket pair")
        func orderKept() throws {
            let (a, b) = try Connection.socketPair()
            let pipe = try Platform.makePipe()
            defer { Platform.close(pipe.read) }
            try a.sendBytes([1, 2, 3])
            try a.sendDescriptor(pipe.write)
            Platform.close(pipe.write)
            try a.send("after")
            #expect(try b.receiveBytes() == [1, 2, 3])
            // A descriptor message is not bytes: it is left for receiveDescriptor.
            let error = #expect(throws: MultiprocessingError.self) { _ = try b.receiveBytes() }
            #expect(error?.code == .invalidArgument)
            #expect(error?.message.contains("receiveDescriptor") == true)
            let received = try b.receiveDescriptor()
            try Array("x".utf8).withUnsafeBytes { try Platform.writeAll(received.rawValue, $0) }
            received.close()
            #expect(try readToEnd(pipe.read) == "x")
            #expect(try b.receive(String.self) == "after")
        }

        @Test("a pipe connection, a closed descriptor and a message that is no descriptor are refused, typed")
        func refusals() throws {
            let (p, q) = try Connection.pipe()
            let onPipe = #expect(throws: MultiprocessingError.self) { try p.sendDescriptor(0) }
            #expect(onPipe?.code == .invalidArgument)
            #expect(onPipe?.message.contains("socketPair") == true)
            #expect(throws: MultiprocessingError.self) { _ = try q.receiveDescriptor() }
            let (a, b) = try Connection.socketPair()
            let pipe = try Platform.makePipe()
            Platform.close(pipe.read)
            Platform.close(pipe.write)
            let closed = #expect(throws: MultiprocessingError.self) { try a.sendDescriptor(pipe.write) }
            #expect(closed?.code == .invalidArgument)
            try a.send("not a descriptor")
            let notOne = #expect(throws: MultiprocessingError.self) { _ = try b.receiveDescriptor() }
            #expect(notOne?.code == .decodingFailed)
            a.close()
            let end = #expect(throws: MultiprocessingError.self) { _ = try b.receiveDescriptor() }
            #expect(end?.code == .endOfStream)
            #expect(throws: MultiprocessingError.self) { _ = try Connection.socketPair(maximumMessageSize: 0) }
        }

        @Test("descriptors that arrived but were never received are closed with the connection")
        func unreceivedDescriptorsClosed() throws {
            let before = openDescriptors().count
            do {
                let (a, b) = try Connection.socketPair()
                let pipe = try Platform.makePipe()
                for _ in 0..<5 { try a.sendDescriptor(pipe.read) }
                Platform.close(pipe.read)
                Platform.close(pipe.write)
                try a.send(1)
                // Looking at the first message pulls its descriptor into the reader of b.
                _ = try? b.receiveBytes()
                #expect(try b.poll())
                a.close()
                b.close()
            }
            #expect(openDescriptors().count == before)
        }
    }
}
