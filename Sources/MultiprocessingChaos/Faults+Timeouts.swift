import Multiprocessing

/// What a timeout trial's pool is.
enum TimeoutTarget: String, CaseIterable, Sendable {
    case forkserverPool = "forkserver pool"
    case spawnPool = "spawn pool"
    case forkingPool = "ForkingPool"
}

let taskTimeout = Duration.milliseconds(300)
let gracePeriod = Duration.milliseconds(200)

/// An item hangs `hang`'s way past `taskTimeout`, on a pool doing nothing
/// else (idle) or running other items (busy). Trial N uses API N mod 3 and
/// pool kind N/3 mod 3. The item must fail with `.timedOut` within the
/// timeout, the grace period and the slack; a busy pool's other items must
/// all succeed.
func timeoutFault(_ hang: Hang, busy: Bool) -> Fault {
    Fault(
        name: "timeout/\(hang.rawValue)-\(busy ? "busy" : "idle")",
        summary: "an item that \(hang.rawValue)s forever on a\(busy ? " busy" : "n idle") pool with taskTimeout",
        deadline: .seconds(30)
    ) { index, arena in
        let api = PoolAPI.allCases[index % PoolAPI.allCases.count]
        let target = TimeoutTarget.allCases[(index / PoolAPI.allCases.count) % TimeoutTarget.allCases.count]
        let started = ContinuousClock.now
        let observed: Observed
        let elapsed: Duration
        if target == .forkingPool {
            observed = try await inCleanChild(
                .forkingPoolItemHangs(
                    hang, api, busy: busy, timeoutMilliseconds: Int(seconds(taskTimeout) * 1000),
                    graceMilliseconds: Int(seconds(gracePeriod) * 1000)))
            elapsed = ContinuousClock.now - started
        } else {
            let options = PoolOptions(
                startMethod: target == .spawnPool ? .spawn : .forkserver, taskTimeout: taskTimeout,
                gracePeriod: gracePeriod)
            let pool = try arena.pool(target.rawValue) { try ProcessPool(workers: busy ? 2 : 1, options: options) }
            let traffic =
                busy ? Task { try await pool.map(tasks: Array(repeating: Nap(milliseconds: 20), count: 40)).collect() } : nil
            do {
                switch api {
                case .submit: _ = try await pool.submit(HangForever(hang: hang)).value
                case .apply: _ = try await pool.apply(HangForever(hang: hang))
                case .map: for try await _ in pool.map(tasks: [HangForever(hang: hang)]) {}
                }
                observed = Observed(code: nil, note: "the hanging item was reported as a success")
            } catch {
                observed = Observed(error)
            }
            elapsed = ContinuousClock.now - started
            if let traffic {
                do {
                    let results = try await traffic.value
                    guard results == Array(repeating: 20, count: 40) else {
                        return .wrong("\(target), \(api): the busy traffic returned \(results)")
                    }
                } catch {
                    return .wrong("\(target), \(api): the busy traffic failed: \(Observed(error))")
                }
            }
        }
        guard observed.code == MultiprocessingError.Code.timedOut.description else {
            return .wrong("\(target), \(api): got \(observed), expected timedOut")
        }
        let bound = taskTimeout + gracePeriod + slack
        guard elapsed <= bound else { return .wrong("\(target), \(api): timed out after \(elapsed), more than \(bound)") }
        return .correct
    }
}
