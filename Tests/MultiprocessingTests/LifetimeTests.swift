#if canImport(Glibc)
    import Glibc
#endif
import Testing
@testable import Multiprocessing

extension ProcessSuites {
    @Suite("Children never outlive their parent", .serialized, .timeLimit(.minutes(1)))
    struct LifetimeTests {
        @Test("a parent killed with SIGKILL leaves no child behind, whatever the start method")
        func sigkilledParentLeavesNoChild() async throws {
            let (parentEnd, childEnd) = try Connection.pipe()
            let middle = try ChildProcess(StartGrandchildren(report: childEnd), startMethod: .spawn)
            try middle.start()
            childEnd.close()
            let grandchildren: [Int32] = try await parentEnd.receive()
            #expect(grandchildren.count == 3)
            #expect(grandchildren.allSatisfy { !isGone($0) })
            try middle.kill()
            try await middle.join()
            let killedAt = ContinuousClock.now
            #expect(eventually(within: .seconds(1)) { grandchildren.allSatisfy(isGone) })
            #expect(ContinuousClock.now - killedAt < .seconds(1))
        }

        @Test("processes a task started itself die with its process when the parent is SIGKILLed: every start method and pool kind")
        func sigkilledParentTakesTheTasksProcesses() async throws {
            let (parentEnd, childEnd) = try Connection.pipe()
            let middle = try ChildProcess(StartPlainDescendants(report: childEnd), startMethod: .spawn)
            try middle.start()
            childEnd.close()
            var started: [Int32] = []
            for _ in 0..<5 {
                let pids: [Int32] = try await parentEnd.receive()
                #expect(pids.count == 2, "a shell and the sleep it started: \(pids)")
                started += pids
            }
            #expect(started.allSatisfy { !isGone($0) })
            try middle.kill()
            try await middle.join()
            #expect(eventually(within: .seconds(2)) { started.allSatisfy(isGone) }, "left: \(started.filter { !isGone($0) })")
        }

        @Test("no zombie is left after children of every kind end")
        func noZombies() async throws {
            for method in [StartMethod.spawn, .forkserver] {
                for way in [Crash.Way.sigkill, .abort, .exit3] {
                    let child = try ChildProcess(Crash(way: way), startMethod: method)
                    try child.start()
                    try await child.join()
                }
            }
            #expect(zombieChildren().isEmpty)
        }
    }
}
