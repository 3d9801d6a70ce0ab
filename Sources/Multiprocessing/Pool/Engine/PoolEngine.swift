#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import CMultiprocessing
import Logging
import Synchronization

/// Figures about one worker slot of a pool.
public struct PoolWorkerStatistics: Sendable, Hashable {
    /// The slot's index.
    public var index: Int
    /// The pid of the worker now in the slot, if one runs.
    public var pid: Int32?
    /// Items completed by the workers of this slot.
    public var tasksDone: Int
    /// Time the workers of this slot spent computing.
    public var busyTime: Duration
    /// How many times the slot's worker was replaced (after a crash, a
    /// timeout, a cancellation or recycling).
    public var restarts: Int
}

/// The local backend of a pool: its worker processes, the queue of jobs, and
/// one thread that waits on every worker at once.
///
/// Jobs flow one way: callers append them to `pending`; dispatch writes them
/// to workers (a few per worker, so a slow one holds up little); the engine
/// thread takes results from the workers' rings and pipes, notices exits and
/// timeouts, and completes chunks. All state is guarded by `lock`;
/// completions run after it is released.
final class PoolEngine: PoolBackend, @unchecked Sendable {
    // @unchecked: every mutable property is touched only with `lock` held.

    enum Phase: Equatable {
        case accepting
        /// No new work; what is queued runs, then the workers stop.
        case closed
        /// Everything fails; every worker is killed.
        case terminating
        case ended
    }

    let options: PoolOptions
    let workerCount: Int
    let lock = ConditionLock()
    var slots: [WorkerSlot] = []
    var pending = FrontQueue<EngineJob>()
    var statistics: [PoolWorkerStatistics]
    var phase = Phase.accepting
    var broken: MultiprocessingError?
    private var nextJobID: UInt64 = 0
    /// Chunks completed under the lock, whose completions run once it is released.
    var completions: [(@Sendable (ChunkResult) -> Void, ChunkResult)] = []
    /// Log records made under the lock, written once it is released.
    private var logRecords: [(Logger.Level, Logger.Message, Logger.Metadata)] = []
    private let wake: (read: Int32, write: Int32)
    let initializer: PoolInitializer?
    /// Runs on the engine thread once every worker has been reaped.
    private let onEnd: (@Sendable () -> Void)?
    let timeoutNanoseconds: UInt64?
    /// Callers watching the rings for a result they wait for
    /// (``waitBriefly(until:)``); while there are any, workers ring no doorbells.
    var watchers = 0

    /// Starts the workers of a ``ForkingPool``: its zygote.
    private let forkServer: Zygote?

    init(
        workers: Int, options: PoolOptions, initializer: PoolInitializer?, forkServer: Zygote? = nil,
        onEnd: (@Sendable () -> Void)? = nil
    ) throws {
        self.options = options
        self.forkServer = forkServer
        self.onEnd = onEnd
        self.initializer = initializer
        workerCount = workers
        timeoutNanoseconds = options.taskTimeout.map { UInt64(clamping: Platform.timeoutNanoseconds($0)) }
        statistics = (0..<workers).map {
            PoolWorkerStatistics(index: $0, pid: nil, tasksDone: 0, busyTime: .zero, restarts: 0)
        }
        wake = try Platform.makePipe()
        Platform.setNonBlocking(wake.read)
        Platform.setNonBlocking(wake.write)
        do {
            for index in 0..<workers { slots.append(try startWorker(index)) }
        } catch {
            for slot in slots { try? slot.process.kill() }
            for slot in slots { _ = try? slot.process.wait(deadline: nil) }
            Platform.close(wake.read)
            Platform.close(wake.write)
            throw error
        }
        PoolExit.register(self)
        startThreadRunning(named: ThreadCensus.poolEngineThreadName) { self.serve() }
    }

    // MARK: PoolBackend

    func submit(_ chunks: [PoolChunk]) throws {
        let needsEngine: Bool = try lock.withLock {
            if let broken { throw broken }
            guard phase == .accepting, !PoolExit.isExiting else {
                throw MultiprocessingError(
                    .closed,
                    PoolExit.isExiting
                        ? "the program is exiting: the pool finishes the work it has and takes no new work"
                        : "the pool was closed; it takes no new work")
            }
            for chunk in chunks {
                pending.append(EngineJob(id: makeJobID(), chunk: EngineChunk(chunk), range: 0..<chunk.items))
            }
            dispatch()
            // The engine thread must learn of a new deadline, and of a chunk
            // larger than the pipe that it must finish writing.
            return timeoutNanoseconds != nil || slots.contains { !$0.outbox.isEmpty }
        }
        if needsEngine { notify() }
    }

    func cancel(_ group: PoolGroup, stopRunning: Bool) {
        lock.withLock {
            pending.filter { job in
                guard job.chunk.group == group else { return true }
                job.chunk.cancelled = true
                complete(job.chunk)
                return false
            }
            for slot in slots {
                var headCancelled = false
                for position in 0..<slot.inFlight.count where slot.inFlight[position].chunk.group == group {
                    let chunk = slot.inFlight[position].chunk
                    chunk.cancelled = true
                    complete(chunk)
                    if position == 0 { headCancelled = true }
                }
                if stopRunning && headCancelled { stop(slot, now: true) }
            }
        }
        notify()
        runCompletions()
    }

    func partialItems(of group: PoolGroup) -> Int {
        lock.withLock {
            var items = 0
            for slot in slots {
                guard let head = slot.inFlight.first, head.chunk.group == group else { continue }
                let status = slot.status.read()
                if status.job == head.id, status.item > head.next, status.item <= head.range.upperBound {
                    items += status.item - head.next
                }
            }
            return items
        }
    }

    func close(cancelPending: Bool) {
        lock.withLock {
            if phase == .accepting { phase = .closed }
            if cancelPending {
                while !pending.isEmpty {
                    let chunk = pending.removeFirst().chunk
                    chunk.cancelled = true
                    complete(chunk)
                }
                // Jobs written to a worker that has not started them are queued work too.
                for slot in slots {
                    let running = slot.status.read().job
                    for position in 0..<slot.inFlight.count where position > 0 || slot.inFlight[0].id != running {
                        let chunk = slot.inFlight[position].chunk
                        chunk.cancelled = true
                        complete(chunk)
                    }
                    stopIfOnlyCancelledWorkIsLeft(slot)
                }
            }
            dispatch()
        }
        notify()
        runCompletions()
    }

    func terminate() {
        lock.withLock {
            guard phase != .ended else { return }
            phase = .terminating
            failPending(MultiprocessingError(.closed, "the pool was terminated"))
            for slot in slots { stop(slot, now: true) }
        }
        notify()
        runCompletions()
    }

    func waitUntilEnded() {
        lock.withLock {
            while phase != .ended { lock.wait() }
        }
    }

    var workerStatistics: [PoolWorkerStatistics] {
        lock.withLock {
            var result = statistics
            for slot in slots { result[slot.index].pid = slot.process.pid }
            return result
        }
    }

    // MARK: The engine thread

    /// What a descriptor in the poll set is watched for.
    private enum Watch {
        case results(WorkerSlot)
        case exit(WorkerSlot)
        case room(WorkerSlot)
    }

    private func serve() {
        // Swift code here runs inside the fork gate: a fork of this process
        // waits for the round to end, so no child inherits a runtime lock
        // this thread held. Only the wait in poll is outside.
        mp_fork_gate_enter()
        defer { mp_fork_gate_leave() }
        var fds: [pollfd] = []
        var watches: [Watch] = []
        while true {
            var timeout: Int32 = -1
            let done: Bool = lock.withLock {
                if slots.isEmpty && (phase == .terminating || (phase != .accepting && pending.isEmpty)) {
                    // Everything this engine opened is closed before anyone is told it ended.
                    watches = []
                    onEnd?()
                    Platform.close(wake.read)
                    Platform.close(wake.write)
                    phase = .ended
                    lock.broadcast()
                    return true
                }
                fds = [pollfd(fd: wake.read, events: Int16(POLLIN), revents: 0)]
                watches = []
                for slot in slots {
                    fds.append(pollfd(fd: slot.results.readFD, events: Int16(POLLIN), revents: 0))
                    watches.append(.results(slot))
                    fds.append(pollfd(fd: slot.exitFD, events: Int16(POLLIN), revents: 0))
                    watches.append(.exit(slot))
                    if !slot.outbox.isEmpty {
                        fds.append(pollfd(fd: slot.work.writeFD, events: Int16(POLLOUT), revents: 0))
                        watches.append(.room(slot))
                    }
                }
                if let next = nextDeadline() {
                    let now = monotonicNanoseconds()
                    timeout = next <= now ? 0 : Int32(min((next - now + 999_999) / 1_000_000, 60_000))
                }
                // Results put in a ring from now on ring the doorbell; ones already there are taken
                // first. A caller that watches the rings takes them itself, and arms them when it stops.
                if watchers == 0 {
                    for slot in slots where mp_ring_prepare_wait(slot.ring.pointer) != 0 { timeout = 0 }
                }
                return false
            }
            if done { break }
            mp_fork_gate_leave()
            let ready = poll(&fds, nfds_t(fds.count), timeout)
            mp_fork_gate_enter()
            if ready < 0 && errno != EINTR { preconditionFailure("poll: \(Platform.errorName(errno))") }
            lock.withLock {
                if fds[0].revents != 0 { Platform.drain(wake.read) }
                for slot in slots { mp_ring_end_wait(slot.ring.pointer) }
                for (position, watch) in watches.enumerated() where fds[position + 1].revents != 0 {
                    switch watch {
                    case .results(let slot) where isCurrent(slot): readPipe(slot)
                    case .exit(let slot) where isCurrent(slot): workerExited(slot)
                    case .room(let slot) where isCurrent(slot): slot.outbox.flush(to: slot.work.writeFD)
                    default: break
                    }
                }
                for slot in slots { takeResults(slot) }
                enforceTimeouts()
                dispatch()
            }
            runCompletions()
        }
        runCompletions()
    }

    private func isCurrent(_ slot: WorkerSlot) -> Bool { slots.contains { $0 === slot } }

    /// Wakes the engine thread to look at the state again.
    func notify() {
        lock.withLock {
            guard phase != .ended else { return }
            Platform.poke(wake.write)
        }
    }

    func makeJobID() -> UInt64 {
        nextJobID += 1
        return nextJobID
    }

    /// Completes a chunk (failing what is missing with `error`, or
    /// `CancellationError` for a cancelled one); its completion runs once
    /// the lock is released.
    func complete(_ chunk: EngineChunk, failingRestWith error: (any Error)? = nil) {
        if let done = chunk.complete(failingRestWith: error) { completions.append(done) }
    }

    func failPending(_ error: MultiprocessingError) {
        while !pending.isEmpty { complete(pending.removeFirst().chunk, failingRestWith: error) }
    }

    func runCompletions() {
        let (ready, records) = lock.withLock {
            defer {
                completions.removeAll(keepingCapacity: true)
                logRecords.removeAll()
            }
            return (completions, logRecords)
        }
        if let logger = options.logger {
            for (level, message, metadata) in records { logger.log(level: level, message, metadata: metadata) }
        }
        for (completion, result) in ready { completion(result) }
    }

    /// Logs, once the lock is released, if the pool has a logger.
    func log(
        _ level: Logger.Level, _ message: @autoclosure () -> Logger.Message, _ slot: WorkerSlot,
        _ metadata: Logger.Metadata = [:]
    ) {
        guard let logger = options.logger, logger.logLevel <= level else { return }
        var all = metadata
        all["worker"] = "\(slot.index)"
        if let pid = slot.process.pid { all["pid"] = "\(pid)" }
        logRecords.append((level, message(), all))
    }

    private func startWorker(_ index: Int) throws -> WorkerSlot {
        let (childWork, work) = try Connection.pipe(duplex: false)
        let (results, childResults) = try Connection.pipe(duplex: false)
        let ring = try ResultRing()
        let sockets = try DescriptorSocket.pair()
        let process = try ChildProcess(
            PoolWorkerTask(
                index: index, work: childWork, results: childResults, ring: ring, descriptors: sockets.worker,
                initializer: initializer, maxMemory: options.maxWorkerMemory,
                itemTimeouts: options.taskTimeout != nil),
            name: "PoolWorker-\(index)", startMethod: options.startMethod, forkServer: forkServer, daemon: true)
        try process.start()
        childWork.close()
        childResults.close()
        // Large chunks pass in fewer, larger writes (up to the system's pipe-max-size).
        _ = mp_set_pipe_size(work.writeFD, 1 << 20)
        _ = mp_set_pipe_size(results.readFD, 1 << 20)
        Platform.setNonBlocking(work.writeFD)
        return WorkerSlot(
            index: index, process: process, work: work, results: results, ring: ring, descriptors: sockets.pool,
            timed: options.taskTimeout != nil)
    }

    /// Starts the replacement of a worker that is gone, if the pool still needs one.
    func replace(_ slot: WorkerSlot) {
        guard phase != .terminating, broken == nil, phase == .accepting || !pending.isEmpty else { return }
        statistics[slot.index].restarts += 1
        do {
            let started = try startWorker(slot.index)
            slots.append(started)
            log(.debug, "pool worker started", started)
        } catch {
            log(.error, "a replacement pool worker could not start", slot, ["error": "\(error)"])
            broken =
                error as? MultiprocessingError
                ?? MultiprocessingError(.systemCall, "a replacement worker could not start: \(error)")
            failPending(broken!)
        }
    }
}

/// What becomes of pools when the program exits: the work they were given
/// is finished first (as `concurrent.futures` does), unless they were
/// terminated; work submitted from then on is refused with an error.
enum PoolExit {
    private struct Entry {
        weak var engine: PoolEngine?
    }

    private static let engines = ForkSafeMutex<[Entry]>([])
    private static let exiting = Atomic(false)
    private static let hookInstalled = Atomic(false)

    static var isExiting: Bool { exiting.load(ordering: .acquiring) }

    /// Called once a pool's workers run: the hook is installed after the
    /// child registry's, so it runs before it (exit handlers run in
    /// reverse order) and the workers are still there to finish the work.
    static func register(_ engine: PoolEngine) {
        engines.withLock { entries in
            entries.removeAll { $0.engine == nil }
            entries.append(Entry(engine: engine))
        }
        if hookInstalled.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged {
            atexit { PoolExit.finishAtExit() }
        }
    }

    private static func finishAtExit() {
        exiting.store(true, ordering: .releasing)
        let live = engines.withLock { $0.compactMap(\.engine) }
        for engine in live { engine.close(cancelPending: false) }
        for engine in live { engine.waitUntilEnded() }
    }

    /// In a forked child: the parent's pools are not this process's.
    static func forgetAfterFork() {
        engines.withLock { $0 = [] }
    }
}
