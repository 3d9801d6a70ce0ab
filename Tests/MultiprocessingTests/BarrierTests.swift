#if canImport(Glibc)
    import Glibc
#endif
import Testing
@testable import Multiprocessing

extension ProcessSuites {
    @Suite("Barriers", .serialized, .timeLimit(.minutes(2)))
    struct BarrierTests {
        @Test(
            "reset breaks the parties waiting at once, and the barrier serves the next round",
            arguments: everyStartMethod)
        func resetBreaksWaiters(method: StartMethod) throws {
            let outcome = try outcome(of: ResetScenario(), startingChildrenWith: method)
            #expect(outcome.bothWaiting)
            #expect(!outcome.brokenAfterReset)
            for child in outcome.children {
                #expect(child.first.error == "brokenBarrier")
                // Released by the reset, not by its own 20 s timeout.
                #expect(child.first.seconds < 10)
                #expect(child.secondError == "none")
            }
            let indices = outcome.children.compactMap(\.secondIndex) + [outcome.parentIndex]
            #expect(indices.sorted() == [0, 1, 2])
        }

        @Test(
            "the action runs once per pass, in the process that arrived last, before any party goes on",
            arguments: everyStartMethod)
        func actionRunsOncePerPass(method: StartMethod) throws {
            let outcome = try outcome(of: ActionScenario(), startingChildrenWith: method)
            #expect(outcome.passes == ActionScenario.rounds)
            for party in outcome.parties {
                #expect(party.passesSeen == Array(1...ActionScenario.rounds))
                #expect(party.lastButActionElsewhere == 0)
            }
            // One party was last in each round.
            #expect(outcome.parties.map(\.lastAndRanAction.count).reduce(0, +) == ActionScenario.rounds)
        }

        @Test(
            "an action that throws breaks the barrier and its error reaches the party that ran it",
            arguments: everyStartMethod)
        func failingAction(method: StartMethod) throws {
            let outcome = try outcome(of: FailingActionScenario(), startingChildrenWith: method)
            #expect(outcome.firstWaiting)
            #expect(outcome.first == "brokenBarrier")
            #expect(outcome.lastOther == nil)
            #expect(outcome.lastError == ActionFailed(pid: outcome.lastPID))
            #expect(outcome.broken)
            #expect(outcome.laterWait == "brokenBarrier")
        }

        @Test(
            "a barrier's default timeout travels with it and applies to a wait given none",
            arguments: everyStartMethod)
        func defaultTimeout(method: StartMethod) throws {
            let outcome = try outcome(of: DefaultTimeoutScenario(), startingChildrenWith: method)
            #expect(outcome.child.error == "timedOut")
            #expect(outcome.child.seconds >= 0.28)
            #expect(outcome.child.seconds < 10)
            #expect(outcome.broken)
        }

        @Test("a party's timeout that runs out during the action breaks the round, also for the party that ran it")
        func timeoutDuringAction() throws {
            // The child waits for the default 1 s; this process arrives last, with 20 s of its own.
            let barrier = try ProcessBarrier(
                parties: 2, action: SlowAction(milliseconds: 2500), timeout: .seconds(1))
            let waiter = try ChildProcess(WaitWithDefaultTimeout(barrier: barrier))
            try waiter.start()
            #expect(eventually { barrier.waitingCount == 1 })
            let start = ContinuousClock.now
            let mine = #expect(throws: MultiprocessingError.self) { try barrier.wait(timeout: .seconds(20)) }
            #expect(mine?.code == .brokenBarrier)
            // It ran the whole action before it learned that the round was broken.
            #expect(ContinuousClock.now - start >= .milliseconds(2400))
            try waiter.join()
            #expect(try waiter.value.error == "timedOut")
            #expect(barrier.isBroken)
        }

        @Test("an explicit timeout wins over the default one; the async wait uses the default")
        func explicitAndAsyncTimeouts() async throws {
            let barrier = try ProcessBarrier(parties: 2, timeout: .seconds(30))
            let start = ContinuousClock.now
            let timedOut = #expect(throws: MultiprocessingError.self) {
                try barrier.wait(timeout: .milliseconds(50))
            }
            #expect(timedOut?.code == .timedOut)
            #expect(ContinuousClock.now - start < .seconds(10))
            barrier.reset()
            let quick = try ProcessBarrier(parties: 2, timeout: .milliseconds(50))
            let asyncTimedOut = await #expect(throws: MultiprocessingError.self) { try await quick.wait() }
            #expect(asyncTimedOut?.code == .timedOut)
        }

        @Test("an action type a child could not find by name is refused when the barrier is made")
        func unresolvableAction() {
            struct Local: BarrierAction { func run() {} }
            let error = #expect(throws: MultiprocessingError.self) {
                _ = try ProcessBarrier(parties: 2, action: Local())
            }
            #expect(error?.code == .unresolvableTask)
        }

        @Test("abort breaks the barrier for the waiters and later waits, until reset")
        func abortUntilReset() throws {
            let barrier = try ProcessBarrier(parties: 2)
            let waiter = try ChildProcess(WaitAtBarrierReportingError(barrier: barrier))
            try waiter.start()
            #expect(eventually { barrier.waitingCount == 1 })
            barrier.abort()
            try waiter.join()
            #expect(try waiter.value == "brokenBarrier")
            #expect(barrier.isBroken)
            let later = #expect(throws: MultiprocessingError.self) { try barrier.wait(timeout: .seconds(5)) }
            #expect(later?.code == .brokenBarrier)
            barrier.reset()
            #expect(!barrier.isBroken)
            let again = try ChildProcess(WaitAtBarrier(barrier: barrier))
            try again.start()
            let mine = try barrier.wait(timeout: .seconds(20))
            try again.join()
            #expect([mine, try again.value].sorted() == [0, 1])
        }
    }
}
