#if canImport(Glibc)
    import Glibc
#endif
import Testing
@testable import Multiprocessing

extension ProcessSuites {
    @Suite("A fork server's death", .serialized, .timeLimit(.minutes(1)))
    struct ForkServerDeathTests {
        @Test("does not end the children it started; their real statuses still reach the parent; the next start works")
        func childrenOutliveTheServer() async throws {
            let stopped = try ChildProcess(StubbornSleeper(), startMethod: .forkserver)
            try stopped.start()
            let finishing = try ChildProcess(Sleep(milliseconds: 600), startMethod: .forkserver)
            try finishing.start()
            let server = try #require(parentPID(of: stopped.pid!))
            #expect(parentPID(of: finishing.pid!) == server)
            #expect(server != getpid())

            kill(server, SIGKILL)
            #expect(eventually(within: .seconds(5)) { isGone(server) })
            usleep(100_000)
            #expect(!isGone(stopped.pid!), "a worker died with its fork server")
            #expect(!isGone(finishing.pid!), "a worker died with its fork server")

            try await finishing.join()
            #expect(finishing.terminationStatus == .exited(0))
            try finishing.value
            try stopped.kill()
            try await stopped.join()
            #expect(stopped.terminationStatus == .signaled(.kill))

            // A new server serves the next start.
            let next = try ChildProcess(Square(number: 7), startMethod: .forkserver)
            try next.start()
            #expect(parentPID(of: next.pid!) != server)
            try await next.join()
            #expect(try next.value == 49)
        }

        @Test("does not stop a pool: its workers finish their items, and workers started later serve")
        func poolOutlivesTheServer() async throws {
            let pool = try ProcessPool(workers: 2, options: PoolOptions(startMethod: .forkserver))
            let before = try pool.submit(Square(number: 3))
            #expect(try await before.value == 9)
            // The pool's workers are the fork server's children. (Counting the
            // test process's children would count other suites' too.)
            let workers = Set(try await pool.map(WorkerPID.self, Array(0..<4), chunkSize: 1).collect())
            let server = try #require(parentPID(of: workers.first!))
            #expect(server != getpid())
            #expect(parentPID(of: server) == getpid())
            #expect(workers.allSatisfy { parentPID(of: $0) == server })
            let slow = try pool.submit(Sleep(milliseconds: 500))
            usleep(100_000)
            kill(server, SIGKILL)
            try await slow.value
            let results = try await pool.map(SquareFunction.self, Array(0..<20), chunkSize: 1).collect()
            #expect(results == (0..<20).map { $0 * $0 })
            pool.close()
            await pool.join()
        }
    }
}
