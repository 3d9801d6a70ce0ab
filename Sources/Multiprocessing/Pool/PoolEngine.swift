#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import CMultiprocessing

/// What became of one chunk.
enum ChunkOutcome: Sendable {
    /// The worker's result message: its kind and payload (a slice of the
    /// message, not a copy), and the compute time.
    case result(kind: UInt8, payload: ArraySlice<UInt8>, nanoseconds: UInt64)
    case failed(any Error)
}

/// One chunk of work on its way through the pool. Mutable state is only
/// touched with the engine's lock held.
final class ChunkJob: @unchecked Sendable {
    let id: UInt64
    let typeName: String
    let payload: [UInt8]
    let items: Int
    /// The work's name, and the index of the chunk's first item in its map.
    let work: String
    let firstItem: Int?
    /// The map the chunk belongs to, which cancels its chunks together.
    let group: ObjectIdentifier?
    let completion: @Sendable (ChunkOutcome) -> Void
    var cancelled = false
    var finished = false

    init(
        id: UInt64, typeName: String, payload: [UInt8], items: Int, work: String, firstItem: Int?,
        group: ObjectIdentifier?, completion: @escaping @Sendable (ChunkOutcome) -> Void
    ) {
        self.id = id
        self.group = group
        self.typeName = typeName
        self.payload = payload
        self.items = items
        self.work = work
        self.firstItem = firstItem
        self.completion = completion
    }

    /// Names the work in errors, such as "Square, items 10..<20". Built only
    /// when needed: most chunks never fail.
    var label: String {
        guard let firstItem else { return work }
        return "\(work), items \(firstItem)..<\(firstItem + items)"
    }
}

/// The chunks a worker holds, in the order it runs them: appended at the
/// back, finished at the front, both in constant time.
struct JobQueue {
    private var jobs = FrontQueue<ChunkJob>()
    /// The items of all the chunks held.
    private(set) var items = 0

    var count: Int { jobs.count }
    var isEmpty: Bool { jobs.isEmpty }
    var first: ChunkJob? { jobs.first }
    var remaining: [ChunkJob] { Array(jobs.remaining) }

    func contains(_ job: ChunkJob) -> Bool { jobs.remaining.contains { $0 === job } }

    mutating func append(_ job: ChunkJob) {
        jobs.append(job)
        items += job.items
    }

    mutating func removeFirst() {
        items -= jobs.removeFirst().items
    }
}

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

/// The parent's side of a pool: its workers, the queue of chunks, and one
/// thread that waits on every worker at once.
///
/// Chunks flow one way: callers append them to `pending`; dispatch writes them
/// to workers (at most `depth` per worker, so a slow chunk holds up little);
/// the engine thread reads results and exits and completes chunks. All state
/// is guarded by `mutex`; completions run after it is released.
final class PoolEngine: @unchecked Sendable {
    final class Slot {
        let index: Int
        let process: ChildProcess<Void>
        let work: Connection
        let results: Connection
        let ring: ResultRing
        /// Results that arrived on the pipe, waiting for their markers in the ring.
        var pipeResults: [[UInt8]] = []
        /// Markers taken from the ring whose results have not arrived yet.
        var awaitingPipe = 0
        let exitFD: Int32
        var inFlight = JobQueue()
        var outbox = Outbox()
        /// The work type of the last chunk sent: the next of the same type goes without its name.
        var lastTypeName: String?
        var ready = false
        var assigned = 0
        var stopping = false
        /// The worker announced it exits without starting the chunks it holds.
        var retiring = false
        var runningSince: ContinuousClock.Instant?
        var killAt: ContinuousClock.Instant?
        var timedOut: UInt64?

        init(
            index: Int, process: ChildProcess<Void>, work: Connection, results: Connection, ring: ResultRing,
            exitFD: Int32
        ) {
            self.index = index
            self.process = process
            self.work = work
            self.results = results
            self.ring = ring
            self.exitFD = exitFD
        }
    }

    let options: PoolOptions
    let workerCount: Int
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let ended = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)
    private var slots: [Slot] = []
    private var pending: [ChunkJob] = []
    private var pendingHead = 0
    private var statistics: [PoolWorkerStatistics]
    private var accepting = true
    private var terminating = false
    private var finished = false
    private(set) var broken: MultiprocessingError?
    private var nextID: UInt64 = 0
    /// Chunks whose completions run once the lock is released.
    private var completions: [(job: ChunkJob, outcome: ChunkOutcome)] = []
    private let wake: (read: Int32, write: Int32)
    private let initializerType: String?
    private let initializer: [UInt8]?

    /// Runs on the engine thread once every worker has been reaped.
    private let onEnd: (@Sendable () -> Void)?

    init(
        workers: Int, options: PoolOptions, initializerType: String?, initializer: [UInt8]?,
        onEnd: (@Sendable () -> Void)? = nil
    ) throws {
        self.options = options
        self.onEnd = onEnd
        workerCount = workers
        self.initializerType = initializerType
        self.initializer = initializer
        statistics = (0..<workers).map {
            PoolWorkerStatistics(index: $0, pid: nil, tasksDone: 0, busyTime: .zero, restarts: 0)
        }
        wake = try Platform.makePipe()
        _ = fcntl(wake.read, F_SETFL, O_NONBLOCK)
        _ = fcntl(wake.write, F_SETFL, O_NONBLOCK)
        pthread_mutex_init(mutex, nil)
        pthread_cond_init(ended, nil)
        do {
            for index in 0..<workers { slots.append(try startWorker(index)) }
        } catch {
            for slot in slots { try? slot.process.kill() }
            for slot in slots { _ = try? slot.process.wait(deadline: nil) }
            Platform.close(wake.read)
            Platform.close(wake.write)
            throw error
        }
        startThreadRunning { self.serve() }
    }

    deinit {
        pthread_cond_destroy(ended)
        pthread_mutex_destroy(mutex)
        mutex.deallocate()
        ended.deallocate()
    }

    private func locked<R>(_ body: () throws -> R) rethrows -> R {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body()
    }

    // MARK: Called by the pool's users

    /// A chunk to queue: what ``submit(_:)`` takes.
    struct Submission {
        var typeName: String
        var payload: [UInt8]
        var items: Int
        var work: String
        var firstItem: Int?
        var group: ObjectIdentifier? = nil
        var completion: @Sendable (ChunkOutcome) -> Void
    }

    /// Queues chunks, all at once (one lock, one write per worker); each
    /// completion runs exactly once, on the engine thread.
    ///
    /// - Throws: `.closed` after ``close()`` or ``terminate()``; the
    ///   initializer's failure when the pool is broken. Then nothing is queued.
    func submit(_ submissions: [Submission]) throws -> [ChunkJob] {
        let (jobs, waiting): ([ChunkJob], Bool) = try locked {
            if let broken { throw broken }
            guard accepting else {
                throw MultiprocessingError(.closed, "the pool was closed; it takes no new work")
            }
            let jobs = submissions.map { submission in
                nextID += 1
                return ChunkJob(
                    id: nextID, typeName: submission.typeName, payload: submission.payload, items: submission.items,
                    work: submission.work, firstItem: submission.firstItem, group: submission.group,
                    completion: submission.completion)
            }
            pending += jobs
            dispatch()
            return (jobs, slots.contains { !$0.outbox.isEmpty })
        }
        // A chunk larger than the pipe was only partly written: the engine
        // thread must start watching for room to write the rest.
        if waiting { notify() }
        return jobs
    }

    /// Cancels a chunk: a queued one is dropped; a running one is abandoned
    /// and, when `kill` is true, its worker killed (and replaced).
    func cancel(_ job: ChunkJob, kill: Bool) {
        locked {
            guard !job.finished, !job.cancelled else { return }
            job.cancelled = true
            if let position = pending[pendingHead...].firstIndex(where: { $0 === job }) {
                pending.remove(at: position)
                finish(job, .failed(CancellationError()))
            } else if kill, let slot = slots.first(where: { $0.inFlight.contains(job) }) {
                signal(slot, SIGKILL)
            }
        }
        notify()
        runCompletions()
    }

    /// Cancels every unfinished chunk of a group (a map), like ``cancel(_:kill:)``.
    func cancel(group: ObjectIdentifier, kill: Bool) {
        locked {
            for job in pending[pendingHead...] where job.group == group && !job.finished && !job.cancelled {
                // Dropped from the queue when its turn comes (see nextPending).
                job.cancelled = true
                finish(job, .failed(CancellationError()))
            }
            for slot in slots {
                let running = slot.inFlight.remaining.filter { $0.group == group && !$0.finished }
                for job in running { job.cancelled = true }
                if kill && !running.isEmpty { signal(slot, SIGKILL) }
            }
        }
        notify()
        runCompletions()
    }

    /// No new work; workers stop once the queued work is done.
    func close() {
        locked {
            accepting = false
            dispatch()
        }
        notify()
    }

    /// Stops now: queued and running work fails, every worker is killed.
    func terminate() {
        locked {
            accepting = false
            terminating = true
            failPending(MultiprocessingError(.closed, "the pool was terminated"))
            for slot in slots { signal(slot, SIGKILL) }
        }
        notify()
        runCompletions()
    }

    /// Blocks until every worker has exited and been reaped.
    func waitUntilEnded() {
        pthread_mutex_lock(mutex)
        while !finished { pthread_cond_wait(ended, mutex) }
        pthread_mutex_unlock(mutex)
    }

    var hasEnded: Bool { locked { finished } }

    var workerStatistics: [PoolWorkerStatistics] {
        locked {
            var result = statistics
            for slot in slots { result[slot.index].pid = slot.process.pid }
            return result
        }
    }

    private func notify() {
        locked {
            guard !finished else { return }
            var byte: UInt8 = 1
            _ = write(wake.write, &byte, 1)
        }
    }

    // MARK: The engine thread

    private func serve() {
        var fds: [pollfd] = []
        var owners: [(slot: Slot, role: Int)] = []
        while true {
            var timeout: Int32 = -1
            let done: Bool = locked {
                if slots.isEmpty && (terminating || (!accepting && pendingIsEmpty)) {
                    // Everything this engine opened is closed before anyone is told it ended.
                    owners = []
                    onEnd?()
                    Platform.close(wake.read)
                    Platform.close(wake.write)
                    finished = true
                    pthread_cond_broadcast(ended)
                    return true
                }
                fds = [pollfd(fd: wake.read, events: Int16(POLLIN), revents: 0)]
                owners = []
                for slot in slots {
                    fds.append(pollfd(fd: slot.results.readFD, events: Int16(POLLIN), revents: 0))
                    owners.append((slot, 0))
                    fds.append(pollfd(fd: slot.exitFD, events: Int16(POLLIN), revents: 0))
                    owners.append((slot, 1))
                    if !slot.outbox.isEmpty {
                        fds.append(pollfd(fd: slot.work.writeFD, events: Int16(POLLOUT), revents: 0))
                        owners.append((slot, 2))
                    }
                }
                if let next = nextDeadline() {
                    let left = next - .now
                    timeout = left <= .zero ? 0 : Int32(min((left / .milliseconds(1)).rounded(.up), 60_000))
                }
                // Results put in a ring from now on ring the doorbell; ones already there are taken first.
                for slot in slots where mp_ring_prepare_wait(slot.ring.pointer) != 0 { timeout = 0 }
                return false
            }
            if done { break }
            let ready = poll(&fds, nfds_t(fds.count), timeout)
            if ready < 0 && errno != EINTR { preconditionFailure("poll: \(Platform.errorName(errno))") }
            locked {
                if fds[0].revents != 0 {
                    var drain = [UInt8](repeating: 0, count: 256)
                    while read(wake.read, &drain, drain.count) > 0 {}
                }
                for slot in slots { mp_ring_end_wait(slot.ring.pointer) }
                for (position, owner) in owners.enumerated() where fds[position + 1].revents != 0 {
                    guard slots.contains(where: { $0 === owner.slot }) else { continue }
                    switch owner.role {
                    case 0: readPipe(owner.slot)
                    case 1: workerExited(owner.slot)
                    default: flush(owner.slot)
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

    private var pendingIsEmpty: Bool { pendingHead >= pending.count }

    private func nextDeadline() -> ContinuousClock.Instant? {
        var earliest: ContinuousClock.Instant?
        for slot in slots {
            if let killAt = slot.killAt { earliest = min(earliest ?? killAt, killAt) }
            if let deadline = headDeadline(slot) { earliest = min(earliest ?? deadline, deadline) }
        }
        return earliest
    }

    private func headDeadline(_ slot: Slot) -> ContinuousClock.Instant? {
        guard let timeout = options.taskTimeout, let head = slot.inFlight.first, slot.timedOut == nil,
            let since = slot.runningSince
        else { return nil }
        return since + timeout * head.items
    }

    /// Reads what the results pipe holds: control messages are handled,
    /// large results wait for their markers (taken by ``takeResults(_:)``,
    /// which the caller runs next), doorbells only woke the engine.
    private func readPipe(_ slot: Slot) {
        repeat {
            let frame: [UInt8]
            do {
                frame = try slot.results.receiveFrame()
            } catch {
                return  // the worker is exiting; its exit descriptor reports it
            }
            switch frame.first {
            case PoolMessage.doorbell: continue
            case PoolMessage.result: slot.pipeResults.append(frame)
            default: handle(frame, from: slot)
            }
        } while slot.results.hasBufferedMessage
    }

    /// Handles the worker's results in the order it sent them: the ring's
    /// records, and at each marker the next result from the pipe.
    private func takeResults(_ slot: Slot) {
        while true {
            if slot.awaitingPipe > 0 {
                guard !slot.pipeResults.isEmpty else { return }
                slot.awaitingPipe -= 1
                handle(slot.pipeResults.removeFirst(), from: slot)
                continue
            }
            let record: [UInt8]
            do {
                guard let next = try slot.ring.take() else { return }
                record = next
            } catch {
                signal(slot, SIGKILL)  // a worker that breaks the protocol is not trusted further
                return
            }
            if record == [PoolMessage.onPipe] {
                slot.awaitingPipe += 1
            } else {
                handle(record, from: slot)
            }
        }
    }

    private func handle(_ frame: [UInt8], from slot: Slot) {
        guard let tag = frame.first else { return }
        if tag == PoolMessage.ready {
            slot.ready = true
            if frame.count > 1, frame[1] != 0 {
                let envelope = try? WireDecoder().decode(ErrorEnvelope.self, from: Array(frame[2...]))
                let cause = envelope.map { "\($0.error)" } ?? "an error that could not be decoded"
                broken = MultiprocessingError(
                    .initializerFailed, "the pool's worker initializer failed in worker \(slot.index): \(cause)")
                accepting = false
                failPending(broken!)
                for other in slots { signal(other, SIGKILL) }
            }
            return
        }
        if tag == PoolMessage.retiring {
            slot.retiring = true
            slot.stopping = true
            return
        }
        guard tag == PoolMessage.result, frame.count >= PoolMessage.resultHeaderSize,
            let id = try? PoolMessage.read(UInt64.self, from: frame, at: 1),
            let job = slot.inFlight.first, job.id == id
        else {
            signal(slot, SIGKILL)  // a worker that breaks the protocol is not trusted further
            return
        }
        slot.inFlight.removeFirst()
        let nanoseconds = (try? PoolMessage.read(UInt64.self, from: frame, at: 10)) ?? 0
        statistics[slot.index].tasksDone += job.items
        statistics[slot.index].busyTime += .nanoseconds(Int64(clamping: nanoseconds))
        // The clock matters only to a task timeout.
        if options.taskTimeout != nil { slot.runningSince = slot.inFlight.isEmpty ? nil : .now }
        finish(
            job,
            .result(kind: frame[9], payload: frame[PoolMessage.resultHeaderSize...], nanoseconds: nanoseconds))
    }

    private func workerExited(_ slot: Slot) {
        _ = try? slot.process.wait(deadline: .now)
        guard let status = slot.process.terminationStatus else { return }
        // Every result the worker sent counts, in order: the ring's, then the
        // pipe's, the last of which may have lost its marker with the worker.
        if (try? Platform.waitReadable([slot.results.readFD], deadline: .now).first) == true { readPipe(slot) }
        takeResults(slot)
        while !slot.pipeResults.isEmpty { handle(slot.pipeResults.removeFirst(), from: slot) }
        slots.removeAll { $0 === slot }
        slot.work.close()
        slot.results.close()
        var jobs = slot.inFlight.remaining
        if let failure: MultiprocessingError = broken
            ?? (terminating ? MultiprocessingError(.closed, "the pool was terminated") : nil)
        {
            for job in jobs { finish(job, job.cancelled ? .failed(CancellationError()) : .failed(failure)) }
            jobs = []
        }
        if let head = jobs.first, !slot.retiring {
            // Only the chunk the worker was running fails (a timed-out one already has).
            jobs.removeFirst()
            if head.cancelled {
                finish(head, .failed(CancellationError()))
            } else {
                finish(
                    head,
                    .failed(
                        MultiprocessingError(
                            .workerDied,
                            "pool worker \(slot.index) (pid \(slot.process.pid ?? 0)) \(status) while running \(head.label)"
                        )))
            }
        }
        // The chunks queued behind the one that ran never started: they go back to the queue, in order.
        pending.insert(contentsOf: jobs.filter { !$0.finished }, at: pendingHead)
        let needed = !terminating && broken == nil && (accepting || !pendingIsEmpty)
        if needed {
            statistics[slot.index].restarts += 1
            do {
                slots.append(try startWorker(slot.index))
            } catch {
                broken =
                    error as? MultiprocessingError
                    ?? MultiprocessingError(.systemCall, "a replacement worker could not start: \(error)")
                accepting = false
                failPending(broken!)
            }
        }
        if slots.isEmpty && !pendingIsEmpty {
            failPending(broken ?? MultiprocessingError(.closed, "the pool has no workers left"))
        }
    }

    private func enforceTimeouts() {
        let now = ContinuousClock.now
        for slot in slots {
            if let killAt = slot.killAt, killAt <= now {
                signal(slot, SIGKILL)
                slot.killAt = nil
            }
            guard let deadline = headDeadline(slot), deadline <= now, let head = slot.inFlight.first else { continue }
            slot.timedOut = head.id
            let limit = options.taskTimeout! * head.items
            finish(
                head,
                .failed(
                    MultiprocessingError(
                        .timedOut,
                        "\(head.label) ran longer than its timeout of \(limit) in pool worker \(slot.index); "
                            + "the worker was stopped and replaced")))
            signal(slot, SIGTERM)
            slot.killAt = now + options.gracePeriod
        }
    }

    /// Gives queued chunks to workers, least busy first. A worker holds at most
    /// two chunks, or up to 1024 small ones (1024 items in all), so that tiny
    /// tasks travel in batches while a long chunk holds up little behind it.
    /// With a task timeout a worker holds one chunk, so its clock starts when
    /// the chunk does.
    private func dispatch() {
        if !accepting && pendingIsEmpty {
            for slot in slots where !slot.stopping && slot.inFlight.isEmpty { stop(slot) }
        }
        guard !pendingIsEmpty else { return }
        // Each chunk goes to the worker holding the fewest.
        while let slot = leastLoadedSlot(), let job = nextPending() {
            if let limit = options.maxTasksPerWorker, slot.assigned > 0, slot.assigned + job.items > limit {
                pendingHead -= 1
                stop(slot)
                continue
            }
            let sameWork = slot.lastTypeName == job.typeName
            PoolMessage.appendWork(
                id: job.id, typeName: sameWork ? nil : job.typeName, payload: job.payload, to: &slot.outbox)
            slot.lastTypeName = job.typeName
            slot.inFlight.append(job)
            slot.assigned += job.items
            if slot.inFlight.count == 1 && options.taskTimeout != nil { slot.runningSince = .now }
        }
        for slot in slots where !slot.outbox.isEmpty { flush(slot) }
        compactPending()
    }

    /// The worker that can take another chunk and holds the fewest, if any.
    private func leastLoadedSlot() -> Slot? {
        var best: Slot?
        for slot in slots where !slot.stopping && slot.timedOut == nil && canTake(slot) {
            if best.map({ slot.inFlight.count < $0.inFlight.count }) ?? true { best = slot }
        }
        return best
    }

    private func canTake(_ slot: Slot) -> Bool {
        if options.taskTimeout != nil { return slot.inFlight.isEmpty }
        if slot.inFlight.count < 2 { return true }
        return slot.inFlight.count < 1024 && slot.inFlight.items < 1024
    }

    private func nextPending() -> ChunkJob? {
        while pendingHead < pending.count {
            let job = pending[pendingHead]
            pendingHead += 1
            if !job.cancelled { return job }
        }
        return nil
    }

    /// Drops the dispatched chunks from the front of the queue (they are
    /// referenced by their workers now), so their payloads can be freed.
    private func compactPending() {
        if pendingHead == pending.count {
            pending.removeAll(keepingCapacity: true)
            pendingHead = 0
        } else if pendingHead > 256 && pendingHead * 2 > pending.count {
            pending.removeFirst(pendingHead)
            pendingHead = 0
        }
    }

    private func stop(_ slot: Slot) {
        guard !slot.stopping else { return }
        slot.stopping = true
        PoolMessage.appendStop(to: &slot.outbox)
        flush(slot)
    }

    /// Writes what the slot's outbox holds without blocking; the rest waits
    /// for POLLOUT. A worker that is gone has its exit handled when reported.
    private func flush(_ slot: Slot) {
        slot.outbox.flush(to: slot.work.writeFD)
    }

    private func signal(_ slot: Slot, _ signal: Int32) {
        // The worker leads its own process group: what it started goes too.
        if let pid = slot.process.pid { _ = systemKill(-pid, signal) }
        try? slot.process.send(Signal(rawValue: signal))
    }

    private func failPending(_ error: MultiprocessingError) {
        while let job = nextPending() { finish(job, .failed(error)) }
        pending.removeAll()
        pendingHead = 0
    }

    private func finish(_ job: ChunkJob, _ outcome: ChunkOutcome) {
        guard !job.finished else { return }
        job.finished = true
        completions.append((job, outcome))
    }

    private func runCompletions() {
        let ready = locked {
            defer { completions.removeAll(keepingCapacity: true) }
            return completions
        }
        for (job, outcome) in ready { job.completion(outcome) }
    }

    private func startWorker(_ index: Int) throws -> Slot {
        let (childWork, work) = try Connection.pipe(duplex: false)
        let (results, childResults) = try Connection.pipe(duplex: false)
        let ring = try ResultRing()
        let task = PoolWorkerTask(
            index: index, work: childWork, results: childResults, ring: ring, initializerType: initializerType,
            initializer: initializer, maxMemory: options.maxWorkerMemory)
        let process = try ChildProcess(
            task, name: "PoolWorker-\(index)", startMethod: options.startMethod, daemon: true)
        try process.start()
        childWork.close()
        childResults.close()
        // Large chunks pass in fewer, larger writes (up to the system's pipe-max-size).
        _ = mp_set_pipe_size(work.writeFD, 1 << 20)
        _ = mp_set_pipe_size(results.readFD, 1 << 20)
        _ = fcntl(work.writeFD, F_SETFL, fcntl(work.writeFD, F_GETFL) | O_NONBLOCK)
        return Slot(
            index: index, process: process, work: work, results: results, ring: ring,
            exitFD: process.exitDescriptor ?? -1)
    }
}
