import Foundation
import Multiprocessing
import Testing

// This file imports Foundation, which has its own `Process`, `Pipe` and
// `Thread`: the library's names must still be usable unqualified here.
extension ProcessSuites {
    @Suite("Names beside Foundation", .serialized)
    struct FoundationCoexistenceTests {
        @Test("ChildProcess, Connection, StartMethod and Signal need no module prefix next to Foundation")
        func namesCompileUnqualified() async throws {
            let (mine, theirs) = try Connection.pipe()
            let child = try ChildProcess(EchoBytes(connection: theirs), startMethod: StartMethod.spawn)
            try child.start()
            theirs.close()
            try mine.sendBytes(Array("ping".utf8))
            #expect(try await mine.receiveBytes() == Array("ping".utf8))
            mine.close()
            try await child.join()
            #expect(child.terminationStatus == TerminationStatus.exited(0))
            #expect(Signal.kill.name == "SIGKILL")
            // Foundation's own types are still there under their names.
            #expect(ProcessInfo.processInfo.processIdentifier == currentProcess.pid)
            _ = Foundation.Pipe()
        }
    }
}
