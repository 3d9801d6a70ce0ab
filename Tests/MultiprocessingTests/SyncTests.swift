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
            #expect(broken?.code == .brokenBarrier)
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

        @Test("a recursive lock is taken again by its holder and released as many times")
        func recursiveLock() throws {
            let lock = try ProcessLock(recursive: true)
            try lock.lock()
            try lock.lock()
            let other = try ChildProcess(TryLockFor(lock: lock, milliseconds: 50))
            try other.start()
            try other.join()
            #expect(try other.value == false)
            try lock.unlock()
            try lock.unlock()
            let again = try ChildProcess(TryLockFor(lock: lock, milliseconds: 1000))
            try again.start()
            try again.join()
            #expect(try again.value == true)
        }

        @Test("a condition wakes a waiter in another process")
        func conditionAcrossProcesses() throws {
            let condition = try ProcessCondition()
            let flag = try SharedValue(0, locked: false)
            let started = try ProcessSemaphore(value: 0)
            let waiter = try ChildProcess(WaitOnCondition(condition: condition, flag: flag, started: started))
            try waiter.start()
            #expect(try started.acquire(timeout: .seconds(20)))
            try condition.withLock { _ in
                flag.value = 42
                condition.notifyAll()
            }
            try waiter.join()
            #expect(try waiter.value == 42)
        }

        @Test("the simple queue carries values between processes and ends when closed")
        func simpleQueue() throws {
            let queue = try SimpleProcessQueue<String>()
            let child = try ChildProcess(PutIntoSimpleQueue(queue: queue, text: "hello"))
            try child.start()
            #expect(try queue.get() == "hello")
            try child.join()
            #expect(queue.isEmpty)
            queue.close()
            let end = #expect(throws: MultiprocessingError.self) { _ = try queue.get() }
            #expect(end?.code == .endOfStream)
        }

        @Test("queues, shared values and locks work across fork, inherited rather than passed")
        func primitivesAcrossFork() async throws {
            let answer = try await ChildProcess.run(UseInheritedPrimitives(), startMethod: .spawn)
            #expect(answer == [0, 1, 2, 3])
        }
    }
}
