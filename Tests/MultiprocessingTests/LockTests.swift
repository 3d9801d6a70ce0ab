#if canImport(Glibc)
    import Glibc
#endif
import Testing
@testable import Multiprocessing

extension ProcessSuites {
    @Suite("Locks and conditions", .serialized, .timeLimit(.minutes(2)))
    struct LockTests {
        @Test(
            "misusing a lock throws .lockNotHeld (or .invalidArgument for a relock) instead of killing the process",
            arguments: everyStartMethod)
        func misuseIsAnError(method: StartMethod) throws {
            let outcome = try outcome(of: LockMisuseScenario(), startingChildrenWith: method)
            let misuse = outcome.child
            #expect(misuse.unlockFree == "lockNotHeld")
            #expect(misuse.unlockHeldByOtherProcess == "lockNotHeld")
            #expect(misuse.stillHeldByOtherProcess)
            #expect(misuse.unlockHeldByOtherThread == "lockNotHeld")
            #expect(misuse.unlockByHolderAfterwards == "none")
            #expect(misuse.recursiveExtraUnlock == "lockNotHeld")
            #expect(misuse.recursiveFreeAfterwards)
            #expect(misuse.relock == "invalidArgument")
            #expect(misuse.tryRelock == "invalidArgument")
            #expect(misuse.waitOutsideLock == "lockNotHeld")
            // The child's refused unlock left the holder's lock as it was.
            #expect(outcome.holderUnlocked == "none")
        }

        @Test("the message of a refused unlock points at the semaphore for a release by another process")
        func unlockErrorNamesTheAlternative() throws {
            let lock = try ProcessLock()
            let error = #expect(throws: MultiprocessingError.self) { try lock.unlock() }
            #expect(error?.code == .lockNotHeld)
            #expect(error?.message.contains("ProcessSemaphore(value: 1, maximum: 1)") == true)
            #expect(error?.errno == EPERM)
        }

        @Test(
            "a lock's description names the process and thread that hold it, and a recursive lock's depth",
            arguments: everyStartMethod)
        func descriptionShowsOwner(method: StartMethod) throws {
            let outcome = try outcome(of: LockDescriptionScenario(), startingChildrenWith: method)
            let (pid, thread) = (outcome.holder[0], outcome.holder[1])
            #expect(pid != outcome.here[0])
            #expect(
                outcome.whileHeld == [
                    "ProcessLock(owner: pid \(pid), thread \(thread))",
                    "ProcessLock(recursive, owner: pid \(pid), thread \(thread), depth: 2)",
                ])
            #expect(outcome.afterRelease == ["ProcessLock(unlocked)", "ProcessLock(recursive, unlocked)"])
            let (here, hereThread) = (outcome.here[0], outcome.here[1])
            #expect(
                outcome.heldHere == [
                    "ProcessLock(owner: pid \(here), thread \(hereThread), the calling thread)",
                    "ProcessLock(recursive, owner: pid \(here), thread \(hereThread), the calling thread, depth: 2)",
                ])
        }

        @Test("a lock whose holder was killed names no owner once the next one has released it")
        func descriptionAfterKilledHolder() throws {
            let lock = try ProcessLock(recursive: true)
            let (mine, theirs) = try Connection.pipe()
            let holder = try ChildProcess(HoldLockAndDie(lock: lock, ready: theirs))
            try holder.start()
            theirs.close()
            _ = try mine.receive(Int.self)
            try holder.join()
            // The dead holder is still recorded until the next one takes the lock.
            #expect(lock.description.hasPrefix("ProcessLock(recursive, owner: pid \(holder.pid!), thread "))
            #expect(try lock.lock() == .previousOwnerDied)
            #expect(lock.description.hasSuffix("the calling thread, depth: 1)"))
            try lock.unlock()
            #expect(lock.description == "ProcessLock(recursive, unlocked)")
        }

        @Test(
            "notify(count: 2) wakes two of three waiting processes, and notify() the third",
            arguments: everyStartMethod)
        func notifyCount(method: StartMethod) throws {
            let outcome = try outcome(of: NotifyCountScenario(), startingChildrenWith: method)
            #expect(outcome.allWaiting)
            #expect(outcome.twoWoke)
            #expect(outcome.wokenAfterPause == 2)
            #expect(outcome.lastWoke)
            #expect(outcome.notified == [true, true, true])
        }

        @Test(
            "wait(for:timeout:) returns once the predicate holds, or false when the whole timeout has passed",
            arguments: everyStartMethod)
        func waitForPredicate(method: StartMethod) throws {
            let outcome = try outcome(of: WaitForPredicateScenario(), startingChildrenWith: method)
            #expect(outcome.satisfied.result)
            #expect(outcome.satisfied.flagAtReturn == 3)
            #expect(outcome.satisfied.seconds < 20)
            #expect(outcome.timedOut.result == false)
            // Three notifications came while it waited: each wait took only the time left.
            #expect(outcome.timedOut.seconds >= 0.38)
            #expect(outcome.timedOut.seconds < 10)
        }

        @Test("wait(for:) does not wait for a predicate that already holds, and a zero timeout checks once")
        func waitForWithoutWaiting() throws {
            let condition = try ProcessCondition()
            var checks = 0
            let result = try condition.withLock { _ in
                try condition.wait(
                    for: {
                        checks += 1
                        return true
                    }, timeout: nil)
            }
            #expect(result && checks == 1)
            let never = try condition.withLock { _ in try condition.wait(for: { false }, timeout: .zero) }
            #expect(never == false)
        }
    }
}
