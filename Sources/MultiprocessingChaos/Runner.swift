#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import Multiprocessing
import Synchronization

/// What one trial found.
enum Verdict: Sendable {
    case correct
    case wrong(String)
}

/// What a fault's leak check counts, besides descriptors, zombies and threads.
enum LeakCheck: Sendable {
    /// Descriptors, zombies and threads, once the fault's pools are gone.
    case processes
    /// Also heap bytes and resident memory over the trials after the first.
    case memory(bytesPerOperation: Int)
}

/// One kind of fault: a trial injects it once and checks the outcome.
struct Fault: Sendable {
    var name: String
    var summary: String
    /// A trial not finished after this long is a hang.
    var deadline: Duration
    var leaks: LeakCheck = .processes
    /// Operations one trial performs, for the leak thresholds.
    var operationsPerTrial = 1
    var trial: @Sendable (_ index: Int, _ arena: Arena) async throws -> Verdict
}

/// What a fault's trials share (pools made once and reused) and what a
/// fault's end tears down, also after a hang.
final class Arena: Sendable {
    private let pools = Mutex<[String: ProcessPool]>([:])
    private let children = Mutex<[AnyChildProcess]>([])

    /// The pool for `key`, made by `make` on first use.
    func pool(_ key: String, _ make: () throws -> ProcessPool) throws -> ProcessPool {
        try pools.withLock { pools in
            if let pool = pools[key] { return pool }
            let pool = try make()
            pools[key] = pool
            return pool
        }
    }

    /// Forgets a pool (one that a trial found broken), terminating it.
    func discardPool(_ key: String) async {
        if let pool = pools.withLock({ $0.removeValue(forKey: key) }) { await pool.terminate() }
    }

    /// Keeps `child` to be killed at the fault's end should its trial hang.
    func adopt(_ child: AnyChildProcess) {
        children.withLock { $0.append(child) }
    }

    func finish() async {
        for pool in pools.withLock({ pools in defer { pools = [:] }; return Array(pools.values) }) {
            await pool.terminate()
        }
        for child in children.withLock({ children in defer { children = [] }; return children }) {
            if child.isAlive { try? child.kill() }
            _ = try? await child.join(timeout: .seconds(10))
        }
    }
}

/// A fault's row of the table.
struct Tally: Sendable {
    var fault: String
    var trials = 0
    var correct = 0
    var wrong = 0
    var hangs = 0
    var leaked: [String] = []
    var examples: [String] = []
    var known = false

    var failed: Bool { wrong > 0 || hangs > 0 || !leaked.isEmpty }

    mutating func note(_ example: String) {
        if examples.count < 3 { examples.append(example) }
    }
}

/// Runs `body`, or gives up on it after `deadline` (it goes on, abandoned):
/// nil when it did not finish in time. Never waits longer than the deadline,
/// whatever `body` blocks in.
func withDeadline<T: Sendable>(
    _ deadline: Duration, _ body: @escaping @Sendable () async throws -> T
) async -> Result<T, any Error>? {
    let race = Race<Result<T, any Error>?>()
    return await withCheckedContinuation { continuation in
        race.arm(continuation)
        Task.detached { race.finish(await Result { try await body() }) }
        Task.detached {
            try? await Task.sleep(for: deadline)
            race.finish(nil)
        }
    }
}

/// The first of two finishers resumes the continuation.
final class Race<T: Sendable>: Sendable {
    private let continuation = Mutex<CheckedContinuation<T, Never>?>(nil)

    func arm(_ waiting: CheckedContinuation<T, Never>) {
        continuation.withLock { $0 = waiting }
    }

    func finish(_ value: T) {
        continuation.withLock { waiting in
            waiting?.resume(returning: value)
            waiting = nil
        }
    }
}

extension Result where Failure == any Error {
    init(catching body: () async throws -> Success) async {
        do { self = .success(try await body()) } catch { self = .failure(error) }
    }
}

/// The tallies so far, readable by the run's own watchdog thread.
let tallies = Mutex<[Tally]>([])

/// Runs `trials` trials of `fault` and tallies them.
func run(_ fault: Fault, trials: Int, known: Bool) async {
    var tally = Tally(fault: fault.name, known: known)
    let arena = Arena()
    let before = Usage.now()
    var warm: Usage?
    var last: Usage?
    let index = tallies.withLock { tallies in
        tallies.append(tally)
        return tallies.count - 1
    }
    let publish = { (tally: Tally) in tallies.withLock { $0[index] = tally } }
    for trial in 0..<trials {
        let outcome = await withDeadline(fault.deadline) { try await fault.trial(trial, arena) }
        tally.trials += 1
        switch outcome {
        case nil:
            tally.hangs += 1
            tally.note("trial \(trial): still running after \(fault.deadline) (a hang); the fault's other trials skipped")
        case .success(.correct)?:
            tally.correct += 1
        case .success(.wrong(let what))?:
            tally.wrong += 1
            tally.note("trial \(trial): \(what)")
        case .failure(let error)?:
            tally.wrong += 1
            tally.note("trial \(trial): the trial itself failed: \(Observed(error))")
        }
        publish(tally)
        if tally.hangs > 0 { break }
        if trial == 0 { warm = Usage.now() }
        last = Usage.now()
    }
    if tally.hangs == 0 {
        checkMemory(fault, warm: warm, last: last, trials: tally.trials, into: &tally)
    }
    if await withDeadline(.seconds(60), { await arena.finish() }) == nil {
        tally.note("tearing the fault's pools and children down took more than 60 s")
        tally.hangs += 1
    } else if tally.hangs == 0 {
        await checkProcesses(before: before, into: &tally)
    }
    publish(tally)
}

private func checkMemory(_ fault: Fault, warm: Usage?, last: Usage?, trials: Int, into tally: inout Tally) {
    guard case .memory(let perOperation) = fault.leaks, let warm, let last, trials > 1 else { return }
    let operations = (trials - 1) * fault.operationsPerTrial
    let heap = last.heap - warm.heap
    if heap > (1 << 20) + perOperation * operations {
        tally.leaked.append("heap +\(bytesText(heap)) over \(operations) operations (\(heap / operations) B each)")
    }
    let resident = last.residentBytes - warm.residentBytes
    if resident > (32 << 20) + 4 * perOperation * operations {
        tally.leaked.append("resident memory +\(bytesText(resident)) over \(operations) operations")
    }
}

private func checkProcesses(before: Usage, into tally: inout Tally) async {
    var after = Usage.now()
    // Pools reap their workers and end their threads just after they return.
    _ = await eventually(within: .seconds(5)) {
        after = Usage.now()
        return after.descriptors <= before.descriptors && after.zombies == 0 && after.threads <= before.threads + 8
    }
    if after.descriptors > before.descriptors {
        tally.leaked.append(
            "\(after.descriptors - before.descriptors) descriptors (\(before.descriptors) before): "
                + descriptorsOpened(since: before.descriptorNames))
    }
    if after.zombies > 0 { tally.leaked.append("\(after.zombies) zombie children") }
    if after.threads > before.threads + 8 {
        tally.leaked.append("\(after.threads - before.threads) threads (\(before.threads) before)")
    }
}

/// The table: one row per fault, then what went wrong.
func table(_ tallies: [Tally]) -> String {
    let header = ["fault", "trials", "correct", "wrong", "hangs", "leaked", "result"]
    let rows = tallies.map { tally in
        [
            tally.fault, "\(tally.trials)", "\(tally.correct)", "\(tally.wrong)", "\(tally.hangs)",
            "\(tally.leaked.count)",
            tally.failed ? (tally.known ? "known" : "FAILED") : (tally.known ? "ok (expected failing)" : "ok"),
        ]
    }
    let widths = header.indices.map { column in ([header] + rows).map { $0[column].count }.max()! }
    func line(_ cells: [String]) -> String {
        cells.enumerated().map { column, cell in
            let pad = String(repeating: " ", count: widths[column] - cell.count)
            return column == 0 || column == cells.count - 1 ? cell + pad : pad + cell
        }.joined(separator: "  ").trimmingSuffix()
    }
    var text = [line(header), line(widths.map { String(repeating: "-", count: $0) })] + rows.map(line)
    for tally in tallies where tally.failed || !tally.examples.isEmpty {
        text.append("")
        text.append("\(tally.fault)\(tally.known ? " (known)" : ""):")
        text += tally.examples.map { "  \($0)" }
        text += tally.leaked.map { "  leaked: \($0)" }
    }
    return text.joined(separator: "\n")
}

extension String {
    func trimmingSuffix() -> String {
        var result = self
        while result.last == " " { result.removeLast() }
        return result
    }
}
