#if canImport(Glibc)
    import Glibc
#endif
import Multiprocessing

/// How a party's two waits at a barrier went: the first broken by a reset,
/// the second in the round after it.
struct WaitsAroundReset: Codable, Sendable {
    var first: TimedWait
    var secondIndex: Int?
    var secondError: String
}

/// Two children wait at a barrier of three; the scenario process resets it,
/// then all three pass it together in the next round.
struct ResetScenario: Scenario {
    struct Outcome: Codable, Sendable {
        var bothWaiting: Bool
        var children: [WaitsAroundReset]
        var brokenAfterReset: Bool
        var parentIndex: Int
    }

    func run(startingChildrenWith method: StartMethod) throws -> Outcome {
        let barrier = try ProcessBarrier(parties: 3)
        let children = try (0..<2).map { _ in
            try ChildProcess(WaitThroughReset(barrier: barrier), startMethod: method)
        }
        for child in children { try child.start() }
        let bothWaiting = eventually { barrier.waitingCount == 2 }
        barrier.reset()
        let brokenAfterReset = barrier.isBroken
        let parentIndex = try barrier.wait(timeout: .seconds(20))
        for child in children { try child.join() }
        return Outcome(
            bothWaiting: bothWaiting, children: try children.map { try $0.value }, brokenAfterReset: brokenAfterReset,
            parentIndex: parentIndex)
    }
}

/// Waits at the barrier (which a reset breaks), then waits again.
struct WaitThroughReset: ProcessTask {
    var barrier: ProcessBarrier

    func run() throws -> WaitsAroundReset {
        let first = timed { try barrier.wait(timeout: .seconds(20)) }
        var index: Int?
        let second = errorCode { index = try barrier.wait(timeout: .seconds(20)) }
        return WaitsAroundReset(first: first, secondIndex: index, secondError: second)
    }
}

/// Counts the barrier's passes, and records which process ran the action.
struct CountPass: BarrierAction {
    var passes: SharedValue<Int>
    var runner: SharedValue<Int32>

    func run() throws {
        passes.value += 1
        runner.value = getpid()
    }
}

/// What a party saw after each pass: the count of passes, and whether it
/// was the last to arrive and the action ran in its process.
struct PartyRounds: Codable, Sendable, Equatable {
    var passesSeen: [Int]
    var lastAndRanAction: [Bool]
    var lastButActionElsewhere: Int
}

/// Three parties, one of them the scenario process, pass a barrier with an
/// action five times.
struct ActionScenario: Scenario {
    static let rounds = 5

    struct Outcome: Codable, Sendable {
        var parties: [PartyRounds]
        var passes: Int
    }

    func run(startingChildrenWith method: StartMethod) throws -> Outcome {
        let passes = try SharedValue(0, locked: false)
        let runner = try SharedValue(Int32(0), locked: false)
        let barrier = try ProcessBarrier(
            parties: 3, action: CountPass(passes: passes, runner: runner), timeout: .seconds(20))
        let children = try (0..<2).map { _ in
            try ChildProcess(PassRounds(barrier: barrier, passes: passes, runner: runner), startMethod: method)
        }
        for child in children { try child.start() }
        let mine = try PassRounds(barrier: barrier, passes: passes, runner: runner).run()
        for child in children { try child.join() }
        return Outcome(parties: try children.map { try $0.value } + [mine], passes: passes.value)
    }
}

/// Passes the barrier `ActionScenario.rounds` times, noting what it saw after each pass.
struct PassRounds: ProcessTask {
    var barrier: ProcessBarrier
    var passes: SharedValue<Int>
    var runner: SharedValue<Int32>

    func run() throws -> PartyRounds {
        var rounds = PartyRounds(passesSeen: [], lastAndRanAction: [], lastButActionElsewhere: 0)
        for _ in 0..<ActionScenario.rounds {
            let index = try barrier.wait()
            // Every party has passed this round before any can reach the
            // next one, so `passes` cannot move on while it is read here.
            rounds.passesSeen.append(passes.value)
            if index == 0 {
                rounds.lastAndRanAction.append(runner.value == getpid())
                if runner.value != getpid() { rounds.lastButActionElsewhere += 1 }
            }
        }
        return rounds
    }
}

struct ActionFailed: Error, Codable, Equatable {
    var pid: Int32
}

/// An action that throws, saying in which process it ran.
struct FailingAction: BarrierAction {
    func run() throws { throw ActionFailed(pid: getpid()) }
}

/// A child waits at a barrier of two whose action throws; a second child
/// arrives last and runs it.
struct FailingActionScenario: Scenario {
    struct Outcome: Codable, Sendable {
        var firstWaiting: Bool
        var first: String
        var lastError: ActionFailed?
        var lastOther: String?
        var lastPID: Int32
        var broken: Bool
        var laterWait: String
    }

    func run(startingChildrenWith method: StartMethod) throws -> Outcome {
        let barrier = try ProcessBarrier(parties: 2, action: FailingAction())
        let first = try ChildProcess(WaitAtBarrierReportingError(barrier: barrier), startMethod: method)
        try first.start()
        let firstWaiting = eventually { barrier.waitingCount == 1 }
        let last = try ChildProcess(WaitAtBarrier(barrier: barrier), startMethod: method)
        try last.start()
        for child in [first, last] as [AnyChildProcess] { try child.join() }
        var lastError: ActionFailed?
        var lastOther: String?
        do {
            _ = try last.value
        } catch let error as ActionFailed {
            lastError = error
        } catch {
            lastOther = String(describing: error)
        }
        return Outcome(
            firstWaiting: firstWaiting, first: try first.value, lastError: lastError, lastOther: lastOther,
            lastPID: last.pid ?? 0, broken: barrier.isBroken,
            laterWait: errorCode { try barrier.wait(timeout: .seconds(5)) })
    }
}

/// Waits at the barrier; returns the error code it got.
struct WaitAtBarrierReportingError: ProcessTask {
    var barrier: ProcessBarrier
    func run() -> String { errorCode { try barrier.wait(timeout: .seconds(20)) } }
}

/// A child waits at a barrier with a default timeout, given no timeout of its own.
struct DefaultTimeoutScenario: Scenario {
    struct Outcome: Codable, Sendable {
        var child: TimedWait
        var broken: Bool
    }

    func run(startingChildrenWith method: StartMethod) throws -> Outcome {
        let barrier = try ProcessBarrier(parties: 2, timeout: .milliseconds(300))
        let child = try ChildProcess(WaitWithDefaultTimeout(barrier: barrier), startMethod: method)
        try child.start()
        try child.join()
        return Outcome(child: try child.value, broken: barrier.isBroken)
    }
}

/// Waits at the barrier without a timeout of its own.
struct WaitWithDefaultTimeout: ProcessTask {
    var barrier: ProcessBarrier

    func run() -> TimedWait { timed { try barrier.wait() } }
}

/// An action that takes its time.
struct SlowAction: BarrierAction {
    var milliseconds: Int
    func run() { usleep(useconds_t(milliseconds * 1000)) }
}
