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
