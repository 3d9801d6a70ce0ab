#if canImport(Glibc)
    import Glibc
#endif
import Testing
@testable import Multiprocessing

extension ProcessSuites {
    @Suite("Semaphores, events and barriers", .serialized, .timeLimit(.minutes(1)))
    struct SyncTests {
        @Test("a barrier of 4 processes lets them all through together, each with its own index")
        func barrierOfProcesses() throws {
            let barrier = try ProcessBarrier(parties: 4)
            let children = try (0..<3).map { _ in try ChildProcess(WaitAtBarrier(barrier: barrier)) }
            for child in children { try child.start() }
            let mine = try barrier.wait(timeout: .seconds(20))
            for child in children { try child.join() }
            let indices = try children.map { try $0.value } + [mine]
            #expect(indices.sorted() == [0, 1, 2, 3])
        }

        @Test("a barrier that times out is broken for everyone until reset")
        func brokenBarrier() throws {
            let barrier = try ProcessBarrier(parties: 2)
            let timedOut = #expect(throws: MultiprocessingError.self) { try barrier.wait(timeout: .milliseconds(50)) }
            #expect(timedOut?.code == .timedOut)
            #expect(barrier.isBroken)
            let broken = #expect(throws: MultiprocessingError.self) { try barrier.wait(timeout: .seconds(1)) }
            #expect(broken?.code == .closed)
            barrier.reset()
            #expect(!barrier.isBroken)
        }

        @Test("an event wakes waiters in other processes")
        func eventWakesOtherProcesses() throws {
            let event = try ProcessEvent()
            let ready = try ProcessSemaphore(value: 0)
            let waiters = try (0..<3).map { _ in try ChildProcess(WaitForEvent(event: event, ready: ready)) }
            for waiter in waiters { try waiter.start() }
            for _ in 0..<3 { #expect(try ready.acquire(timeout: .seconds(20))) }
            #expect(!event.isSet)
            #expect(waiters.allSatisfy { $0.isAlive })
            event.set()
            for waiter in waiters {
                try waiter.join()
                #expect(try waiter.value == true)
            }
            event.clear()
            #expect(try event.wait(timeout: .milliseconds(20)) == false)
        }

        @Test("a bounded semaphore refuses an over-release; acquire times out")
        func boundedSemaphore() throws {
            let semaphore = try ProcessSemaphore(value: 1, maximum: 1)
            let error = #expect(throws: MultiprocessingError.self) { try semaphore.release() }
            #expect(error?.code == .invalidArgument)
            #expect(try semaphore.acquire(timeout: .zero))
            #expect(try semaphore.acquire(timeout: .milliseconds(30)) == false)
            try semaphore.release()
            #expect(semaphore.value == 1)
            #expect(throws: MultiprocessingError.self) { _ = try ProcessSemaphore(value: 3, maximum: 2) }
        }
    }
}
