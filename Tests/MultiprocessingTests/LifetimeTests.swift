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
