#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import Multiprocessing

/// How a trial hands a task to a pool.
enum PoolAPI: String, Codable, CaseIterable, Sendable {
    case submit, apply, map
}

/// Work that forks (the fork start method, ``ForkingPool``), run in a spawned
/// child that never starts a thread: the chaos program itself runs many, and
/// forking it is refused, rightly.
struct InCleanChild: ProcessTask {
    enum Scenario: Codable, Sendable {
        /// A child made by the fork start method dies.
        case forkedChildDies(Death)
        /// The one worker of a ForkingPool dies running an item.
        case forkingPoolWorkerDies(Death)
        /// An item of a ForkingPool hangs past the task timeout, alone or
        /// while other items keep the pool busy.
        case forkingPoolItemHangs(Hang, PoolAPI, busy: Bool, timeoutMilliseconds: Int, graceMilliseconds: Int)
    }

    var scenario: Scenario
    /// The null page address a dying closure writes to (8), out of the optimizer's sight.
    var address = 8

    /// Longer than any trial's deadline in the parent: a wait that runs out
    /// here has already been reported as a hang there.
    static let patience = Duration.seconds(120)

    func run() throws -> Observed {
        let started = ContinuousClock.now
        var observed = try observe()
        observed.seconds = seconds(ContinuousClock.now - started)
        return observed
    }

    private func observe() throws -> Observed {
        switch scenario {
        case .forkedChildDies(let death):
            let address = address
            let child = try ChildProcess { death.happen(address: address) }
            try child.start()
            guard try child.join(timeout: Self.patience) else {
                return Observed(code: "noStatus", note: "the forked child was never reported")
            }
            return Observed(code: nil, status: child.terminationStatus)
        case .forkingPoolWorkerDies(let death):
            let address = address
            let pool = try ForkingPool(workers: 1) { (death: Death) -> Int in
                death.happen(address: address)
                return 0
            }
            defer {
                pool.close()
                pool.join()
            }
            do {
                _ = try pool.submit(death).get(timeout: Self.patience)
                return Observed(code: nil, note: "the item was reported as a success")
            } catch {
                return Observed(error)
            }
        case .forkingPoolItemHangs(let hang, let api, let busy, let timeout, let grace):
            let options = PoolOptions(taskTimeout: .milliseconds(timeout), gracePeriod: .milliseconds(grace))
            let pool = try ForkingPool(workers: busy ? 2 : 1, options: options) { (hang: Hang?) -> Int in
                guard let hang else {
                    usleep(20_000)
                    return 1
                }
                hang.happen()
                return 0
            }
            defer {
                pool.close(cancelPending: true)
                pool.join()
            }
            let traffic = busy ? pool.map(Array(repeating: nil as Hang?, count: 40)) : nil
            let outcome: Observed
            do {
                switch api {
                case .submit, .apply:
                    // Synchronous code has no apply: it is submit and a blocking get.
                    _ = try pool.submit(hang).get(timeout: Self.patience)
                case .map:
                    _ = try pool.map([hang]).get(timeout: Self.patience)
                }
                outcome = Observed(code: nil, note: "the hanging item was reported as a success")
            } catch {
                outcome = Observed(error)
            }
            if let traffic {
                do {
                    let results = try traffic.get(timeout: Self.patience)
                    guard results == Array(repeating: 1, count: 40) else {
                        return Observed(code: "wrongResults", note: "the busy traffic returned \(results)")
                    }
                } catch {
                    return Observed(code: "trafficFailed", note: "the busy traffic failed: \(Observed(error))")
                }
            }
            return outcome
        }
    }
}

func seconds(_ duration: Duration) -> Double {
    let (whole, attoseconds) = duration.components
    return Double(whole) + Double(attoseconds) / 1e18
}
