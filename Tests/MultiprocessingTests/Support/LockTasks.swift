#if canImport(Glibc)
    import Glibc
#endif
import Multiprocessing

/// What each misuse of a lock gave, as error codes ("none": no error).
struct LockMisuse: Codable, Sendable, Equatable {
    var unlockFree: String
    var unlockHeldByOtherProcess: String
    var stillHeldByOtherProcess: Bool
    var unlockHeldByOtherThread: String
    var unlockByHolderAfterwards: String
    var recursiveExtraUnlock: String
    var recursiveFreeAfterwards: Bool
    var relock: String
    var tryRelock: String
    var waitOutsideLock: String
}

/// The scenario process holds a lock; a child misuses it and other locks.
struct LockMisuseScenario: Scenario {
    struct Outcome: Codable, Sendable {
        var child: LockMisuse
        var holderUnlocked: String
    }

    func run(startingChildrenWith method: StartMethod) throws -> Outcome {
        let held = try ProcessLock()
        try held.lock()
        let child = try ChildProcess(MisuseLocks(heldElsewhere: held), startMethod: method)
        try child.start()
        try child.join()
        let misuse = try child.value
        return Outcome(child: misuse, holderUnlocked: errorCode { try held.unlock() })
    }
}

/// Misuses locks in every way that used to kill the process, and reports each error.
struct MisuseLocks: ProcessTask {
    var heldElsewhere: ProcessLock

    func run() throws -> LockMisuse {
        let free = try ProcessLock()
        let unlockFree = errorCode { try free.unlock() }

        let unlockHeld = errorCode { try heldElsewhere.unlock() }
        let stillHeld = try heldElsewhere.tryLock() == nil

        let mine = try ProcessLock()
        try mine.lock()
        var fromThread = ""
        onAnotherThread { fromThread = errorCode { try mine.unlock() } }
        let byHolder = errorCode { try mine.unlock() }

        let recursive = try ProcessLock(recursive: true)
        try recursive.lock()
        try recursive.lock()
        try recursive.unlock()
        try recursive.unlock()
        let extra = errorCode { try recursive.unlock() }
        var freeAfterwards = false
        onAnotherThread {
            freeAfterwards = (try? recursive.tryLock()) == .acquired
            if freeAfterwards { try? recursive.unlock() }
        }

        try free.lock()
        let relock = errorCode { try free.lock() }
        let tryRelock = errorCode { _ = try free.tryLock() }
        try free.unlock()

        let condition = try ProcessCondition()
        let waitOutside = errorCode { try condition.wait(timeout: .seconds(5)) }

        return LockMisuse(
            unlockFree: unlockFree, unlockHeldByOtherProcess: unlockHeld, stillHeldByOtherProcess: stillHeld,
            unlockHeldByOtherThread: fromThread, unlockByHolderAfterwards: byHolder, recursiveExtraUnlock: extra,
            recursiveFreeAfterwards: freeAfterwards, relock: relock, tryRelock: tryRelock,
            waitOutsideLock: waitOutside)
    }
}

/// A child holds a plain and a recursive lock (twice) while the scenario
/// process reads their descriptions, then releases them.
struct LockDescriptionScenario: Scenario {
    struct Outcome: Codable, Sendable {
        var holder: [Int32]
        var whileHeld: [String]
        var afterRelease: [String]
        var here: [Int32]
        var heldHere: [String]
    }

    func run(startingChildrenWith method: StartMethod) throws -> Outcome {
        let plain = try ProcessLock()
        let recursive = try ProcessLock(recursive: true)
        let (mine, theirs) = try Connection.pipe()
        let child = try ChildProcess(
            HoldLocksUntilTold(plain: plain, recursive: recursive, control: theirs), startMethod: method)
        try child.start()
        theirs.close()
        let holder = try mine.receive([Int32].self)
        let whileHeld = [plain.description, recursive.description]
        try mine.send(0)
        try child.join()
        _ = try child.value
        let afterRelease = [plain.description, recursive.description]
        try plain.lock()
        try recursive.lock()
        try recursive.lock()
        let heldHere = [plain.description, recursive.description]
        try recursive.unlock()
        try recursive.unlock()
        try plain.unlock()
        return Outcome(
            holder: holder, whileHeld: whileHeld, afterRelease: afterRelease, here: [getpid(), currentThreadID()],
            heldHere: heldHere)
    }
}

/// Takes `plain` once and `recursive` twice, sends its pid and thread id,
/// and releases them when told.
struct HoldLocksUntilTold: ProcessTask {
    var plain: ProcessLock
    var recursive: ProcessLock
    var control: Connection

    func run() throws {
        try plain.lock()
        try recursive.lock()
        try recursive.lock()
        try control.send([getpid(), currentThreadID()])
        _ = try control.receive(Int.self)
        try recursive.unlock()
        try recursive.unlock()
        try plain.unlock()
    }
}

/// Three children wait on a condition; `notify(count: 2)` wakes two of
/// them, and a `notify()` the third.
struct NotifyCountScenario: Scenario {
    struct Outcome: Codable, Sendable {
        var allWaiting: Bool
        var twoWoke: Bool
        var wokenAfterPause: Int
        var lastWoke: Bool
        var notified: [Bool]
    }

    func run(startingChildrenWith method: StartMethod) throws -> Outcome {
        let condition = try ProcessCondition()
        let waiting = try SharedValue(0, locked: false)
        let woken = try SharedValue(0, locked: false)
        let children = try (0..<3).map { _ in
            try ChildProcess(
                WaitOnceOnCondition(condition: condition, waiting: waiting, woken: woken), startMethod: method)
        }
        for child in children { try child.start() }
        // A waiter counts itself holding the lock, and only its wait lets the
        // lock go: once the count is 3, all three wait.
        let allWaiting = try eventually { try condition.withLock { _ in waiting.value == 3 } }
        try condition.withLock { _ in condition.notify(count: 2) }
        let twoWoke = try eventually { try condition.withLock { _ in woken.value == 2 } }
        usleep(300_000)
        let wokenAfterPause = try condition.withLock { _ in woken.value }
        try condition.withLock { _ in condition.notify() }
        let lastWoke = try eventually { try condition.withLock { _ in woken.value == 3 } }
        for child in children { try child.join() }
        return Outcome(
            allWaiting: allWaiting, twoWoke: twoWoke, wokenAfterPause: wokenAfterPause, lastWoke: lastWoke,
            notified: try children.map { try $0.value })
    }
}

/// Waits once on the condition; returns whether it was notified (not timed out).
struct WaitOnceOnCondition: ProcessTask {
    var condition: ProcessCondition
    var waiting: SharedValue<Int>
    var woken: SharedValue<Int>

    func run() throws -> Bool {
        try condition.withLock { _ in
            waiting.value += 1
            let notified = try condition.wait(timeout: .seconds(30))
            woken.value += 1
            return notified
        }
    }
}

/// A child waits for a predicate that the scenario process makes true in
/// three steps; another waits for one that stays false, until its timeout.
struct WaitForPredicateScenario: Scenario {
    struct Outcome: Codable, Sendable {
        var satisfied: PredicateWait
        var timedOut: PredicateWait
    }

    func run(startingChildrenWith method: StartMethod) throws -> Outcome {
        let condition = try ProcessCondition()
        let flag = try SharedValue(0, locked: false)
        let started = try ProcessSemaphore(value: 0)
        let satisfied = try ChildProcess(
            WaitForFlag(condition: condition, flag: flag, target: 3, timeout: .seconds(30), started: started),
            startMethod: method)
        let timedOut = try ChildProcess(
            WaitForFlag(condition: condition, flag: flag, target: 100, timeout: .milliseconds(400), started: started),
            startMethod: method)
        for child in [satisfied, timedOut] { try child.start() }
        for _ in 0..<2 { guard try started.acquire(timeout: .seconds(20)) else { break } }
        for _ in 0..<3 {
            usleep(50_000)
            try condition.withLock { _ in
                flag.value += 1
                condition.notifyAll()
            }
        }
        for child in [satisfied, timedOut] { try child.join() }
        return Outcome(satisfied: try satisfied.value, timedOut: try timedOut.value)
    }
}

struct PredicateWait: Codable, Sendable {
    var result: Bool
    var flagAtReturn: Int
    var seconds: Double
}

/// Waits, inside the condition's lock, for `flag >= target`.
struct WaitForFlag: ProcessTask {
    var condition: ProcessCondition
    var flag: SharedValue<Int>
    var target: Int
    var timeout: Duration
    var started: ProcessSemaphore

    func run() throws -> PredicateWait {
        try condition.withLock { _ in
            try started.release()
            let start = ContinuousClock.now
            let result = try condition.wait(for: { flag.value >= target }, timeout: timeout)
            return PredicateWait(result: result, flagAtReturn: flag.value, seconds: seconds(since: start))
        }
    }
}
