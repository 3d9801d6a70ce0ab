import Testing
@testable import Multiprocessing

extension ProcessSuites {
    @Suite("Waiting on many connections and children", .serialized, .timeLimit(.minutes(2)))
    struct WaitForReadyTests {
        @Test("only the connection whose child replied is ready", arguments: [StartMethod.spawn, .forkserver])
        func readyConnection(method: StartMethod) throws {
            let pairs = try (0..<3).map { _ in try Connection.pipe() }
            let children = try pairs.map { try ChildProcess(ReplyOnce(connection: $0.1), startMethod: method) }
            for (child, pair) in zip(children, pairs) {
                try child.start()
                pair.1.close()
            }
            let mine = pairs.map(\.0)
            #expect(try waitForReady(connections: mine, children: children, timeout: .milliseconds(50)).isEmpty)
            try mine[1].send("second")
            let ready = try waitForReady(connections: mine + [mine[1]], children: children, timeout: .seconds(30))
            #expect(ready.connections.count == 1 && ready.connections.first === mine[1])
            #expect(ready.children.isEmpty)
            #expect(try mine[1].receive(String.self) == "second")
            try mine[2].send("third")
            try mine[0].send("first")
            var replies: Set<String> = []
            while replies.count < 2 {
                for connection in try waitForReady(connections: mine, timeout: .seconds(30)).connections {
                    replies.insert(try connection.receive(String.self))
                }
            }
            #expect(replies == ["first", "third"])
            for connection in mine { connection.close() }
            for child in children { try child.join() }
        }

        @Test("a child's exit is an event, and the child comes back reaped", arguments: [StartMethod.spawn, .forkserver])
        func childExit(method: StartMethod) throws {
            let (mine, theirs) = try Connection.pipe()
            let (other, otherTheirs) = try Connection.pipe()
            let quitter = try ChildProcess(ExitOnMessage(connection: theirs, code: 3), startMethod: method)
            let stayer = try ChildProcess(ExitOnMessage(connection: otherTheirs, code: 0), startMethod: method)
            try quitter.start()
            try stayer.start()
            theirs.close()
            otherTheirs.close()
            #expect(try waitForReady(connections: [], children: [quitter, stayer], timeout: .zero).isEmpty)
            try mine.send("exit now")
            let ready = try waitForReady(connections: [other], children: [stayer, quitter], timeout: .seconds(30))
            #expect(ready.connections.isEmpty)
            #expect(ready.children.count == 1 && ready.children.first === quitter)
            #expect(quitter.exitCode == 3)
            #expect(stayer.isAlive)
            // An ended child stays ready.
            #expect(try waitForReady(connections: [], children: [quitter], timeout: .zero).children.count == 1)
            other.close()
            let second = try waitForReady(connections: [], children: [stayer], timeout: .seconds(30))
            #expect(second.children.first === stayer && stayer.exitCode == 0)
            mine.close()
        }

        @Test("a closed peer counts as ready: the receive then says end of stream")
        func endOfStreamIsReady() async throws {
            let (mine, theirs) = try Connection.pipe()
            let child = try ChildProcess(ExitOnMessage(connection: theirs, code: 0), startMethod: .spawn)
            try child.start()
            theirs.close()
            try mine.send("bye")
            try await child.join()
            let ready = try await waitForReady(connections: [mine], timeout: .seconds(30))
            #expect(ready.connections.first === mine)
            let error = #expect(throws: MultiprocessingError.self) { _ = try mine.receiveBytes() }
            #expect(error?.code == .endOfStream)
        }

        @Test("the async wait ends with the timeout, and at once when its task is cancelled")
        func asyncTimeoutAndCancellation() async throws {
            let (mine, theirs) = try Connection.pipe()
            let child = try ChildProcess(ExitOnMessage(connection: theirs, code: 0), startMethod: .spawn)
            try child.start()
            theirs.close()
            let start = ContinuousClock.now
            #expect(try await waitForReady(connections: [mine], children: [child], timeout: .milliseconds(200)).isEmpty)
            #expect(ContinuousClock.now - start >= .milliseconds(190))
            let waiter = Task { try await waitForReady(connections: [mine], children: [child]) }
            waiter.cancel()
            await #expect(throws: CancellationError.self) { _ = try await waiter.value }
            mine.close()
            try await child.join()
            #expect(child.exitCode == 0)
        }

        @Test("waiting on a sending end, a closed connection or an unstarted child is refused")
        func invalidInputs() throws {
            let (reader, writer) = try Connection.pipe(duplex: false)
            let sending = #expect(throws: MultiprocessingError.self) {
                _ = try waitForReady(connections: [writer], timeout: .zero)
            }
            #expect(sending?.code == .invalidArgument)
            reader.close()
            let closed = #expect(throws: MultiprocessingError.self) {
                _ = try waitForReady(connections: [reader], timeout: .zero)
            }
            #expect(closed?.code == .closed)
            let (a, b) = try Connection.pipe()
            let child = try ChildProcess(ExitOnMessage(connection: b, code: 0))
            let unstarted = #expect(throws: MultiprocessingError.self) {
                _ = try waitForReady(connections: [a], children: [child], timeout: .zero)
            }
            #expect(unstarted?.code == .notStarted)
        }
    }
}
