import Multiprocessing

/// Where a dying task runs: every start method, pools of task values and ForkingPool.
enum DeathTarget: String, CaseIterable, Sendable {
    case spawnChild = "spawn child"
    case forkserverChild = "forkserver child"
    case forkChild = "fork child"
    case spawnPool = "spawn pool"
    case forkserverPool = "forkserver pool"
    case forkingPool = "ForkingPool"

    var isChild: Bool { self == .spawnChild || self == .forkserverChild || self == .forkChild }
}

/// How late a death or a timeout may be reported, on a loaded machine.
let slack = Duration.seconds(5)

/// A worker or child dies `death`'s way; trial N runs on target N mod 6. A
/// child must end with the death's status; a pool item must fail with
/// `.workerDied` carrying it; both within the slack.
func deathFault(_ death: Death) -> Fault {
    Fault(
        name: "death/\(death.rawValue)",
        summary: "a child or worker dies by \(death.rawValue), every start method and pool kind",
        deadline: .seconds(60)
    ) { index, arena in
        let target = DeathTarget.allCases[index % DeathTarget.allCases.count]
        let started = ContinuousClock.now
        let observed: Observed
        switch target {
        case .spawnChild, .forkserverChild:
            let child = try ChildProcess(Die(death: death), startMethod: target == .spawnChild ? .spawn : .forkserver)
            try child.start()
            try await child.join()
            observed = Observed(code: nil, status: child.terminationStatus)
            try child.close()
        case .forkChild:
            observed = try await inCleanChild(.forkedChildDies(death))
        case .spawnPool, .forkserverPool:
            let method: StartMethod = target == .spawnPool ? .spawn : .forkserver
            let pool = try arena.pool(target.rawValue) {
                try ProcessPool(workers: 1, options: PoolOptions(startMethod: method))
            }
            do {
                try await pool.apply(Die(death: death))
                observed = Observed(code: nil, note: "the item was reported as a success")
            } catch {
                observed = Observed(error)
            }
        case .forkingPool:
            observed = try await inCleanChild(.forkingPoolWorkerDies(death))
        }
        let elapsed = ContinuousClock.now - started
        let expectedCode = target.isChild ? nil : MultiprocessingError.Code.workerDied.description
        guard observed.code == expectedCode, observed.status == death.expectedStatus else {
            return .wrong(
                "\(target): got \(observed), expected \(expectedCode ?? "success"), \(death.expectedStatus)")
        }
        guard elapsed <= slack else { return .wrong("\(target): reported after \(elapsed), more than \(slack)") }
        return .correct
    }
}

/// Runs a scenario that forks in a spawned, single-threaded child and returns what it saw.
func inCleanChild(_ scenario: InCleanChild.Scenario) async throws -> Observed {
    let child = try ChildProcess(InCleanChild(scenario: scenario), startMethod: .spawn)
    try child.start()
    do {
        try await child.join()
    } catch {
        // Cancelled by the trial's deadline: the child goes with the trial.
        try? child.kill()
        throw error
    }
    defer { try? child.close() }
    return try child.value
}
