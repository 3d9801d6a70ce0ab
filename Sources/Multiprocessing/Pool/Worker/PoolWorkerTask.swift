#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import CMultiprocessing

/// The task every pool worker runs: set up, then run jobs until told to stop.
///
/// A worker is an ordinary child process running this task. It reads work
/// messages from its work pipe, runs each job's items, and puts each result
/// in its ``ResultRing`` before it starts on anything else, so if the next
/// item kills the worker, everything before it is already the pool's.
struct PoolWorkerTask: ProcessTask {
    var index: Int
    var work: Connection
    var results: Connection
    var ring: ResultRing
    /// Where the descriptors of jobs whose inputs hold them arrive.
    var descriptors: DescriptorSocket
    var initializer: PoolInitializer?
    var maxMemory: Int?
    /// Whether the pool has a task timeout: then each item's result is sent
    /// as soon as it is done, and each item's start time is recorded.
    var itemTimeouts: Bool

    func run() async throws {
        // Its own process group: a timeout or a cancellation kills the worker
        // and whatever it started, together.
        _ = setpgid(0, 0)
        // Chunks allocate and free the same large arrays over and over.
        mp_keep_freed_memory_for_reuse()
        PoolWorker.currentIndex = index
        ProcessTitle.set("pool worker \(index)")
        let failure = await initialize()
        try PoolMessage.readyFrame(failure: failure).withUnsafeBytes { try results.sendRaw($0) }
        if failure != nil { return }
        var worker = WorkerLoop(task: self)
        try await worker.serve()
    }

    /// Runs the initializer; returns the encoded error if it threw.
    private func initialize() async -> [UInt8]? {
        guard let initializer else { return nil }
        do {
            PoolWorker.currentState = try await initializer.makeState()
            return nil
        } catch {
            return try? WireEncoder().encode(ErrorEnvelope(error, processName: ProcessIdentity.current.name))
        }
    }
}

/// A worker's loop and what it keeps between jobs.
private struct WorkerLoop {
    let task: PoolWorkerTask
    let status: _ItemStatus
    var kinds: [String: any PoolWork.Type] = [:]
    var lastName = ""
    var lastKind: (any PoolWork.Type)?
    /// The message being built, reused for every result.
    var out: [UInt8] = []

    init(task: PoolWorkerTask) {
        self.task = task
        status = task.ring.status(timed: task.itemTimeouts)
    }

    mutating func serve() async throws {
        while true {
            let frame: [UInt8]
            do {
                frame = try task.work.receiveFrame()
            } catch {
                return  // the pool is gone
            }
            guard case .work(let work, let payload) = try PoolMessage.parseToWorker(frame) else { return }
            try await run(work, payload)
            if let maxMemory = task.maxMemory, residentMemory() > maxMemory {
                try task.results.sendBytes(PoolMessage.retiring)
                return
            }
        }
    }

    private mutating func run(_ work: PoolMessage.Work, _ payload: ArraySlice<UInt8>) async throws {
        if let name = work.typeName {
            lastName = name
            lastKind = kinds[name] ?? (_typeByName(name) as? any PoolWork.Type)
            kinds[name] = lastKind
        }
        var transfer: DescriptorTransfer?
        if work.descriptorCount > 0 {
            transfer = DescriptorTransfer(descriptors: try task.descriptors.receive(count: work.descriptorCount))
        }
        defer { transfer?.closeUntaken() }
        let task = self.task
        status.startedJob(work.id)
        var since = monotonicNanoseconds()
        var out = self.out
        defer { self.out = out }
        let publish: ResultSink = { range, kind, encode in
            let now = monotonicNanoseconds()
            out.removeAll(keepingCapacity: true)
            var header = PoolMessage.Result(id: work.id, range: range, kind: kind, nanoseconds: now &- since)
            PoolMessage.appendResult(header, to: &out)
            do {
                try encode(&out)
            } catch {
                // An output that does not encode fails its items, with the reason.
                out.removeAll(keepingCapacity: true)
                header.kind = .failed
                PoolMessage.appendResult(header, to: &out)
                try WireEncoder().encode(
                    ErrorEnvelope(error, processName: ProcessIdentity.current.name), into: &out)
            }
            try task.send(result: out)
            since = now
        }
        let context = WorkContext(status: status, eachItem: task.itemTimeouts, transfer: transfer)
        guard let kind = lastKind else {
            let error = MultiprocessingError(
                .unresolvableTask, "the pool worker cannot find the work type '\(lastName)'")
            return try publishFailure(error, work.range, publish)
        }
        try await kind.run(payload, range: work.range, context: context, publish: publish)
    }
}

extension PoolWorkerTask {
    /// Puts a result in the ring, or on the pipe with a marker in the ring
    /// when it is large; rings the doorbell when the pool sleeps.
    fileprivate func send(result: [UInt8]) throws {
        let wake: Bool
        if result.count <= ResultRing.largestInRing {
            wake = result.withUnsafeBytes { ring.put($0) }
        } else {
            try results.sendBytes(result)
            wake = PoolMessage.onPipe.withUnsafeBytes { ring.put($0) }
        }
        if wake { try results.sendBytes(PoolMessage.doorbell) }
    }
}

/// This process's resident memory in bytes, from /proc/self/statm.
func residentMemory() -> Int {
    guard let text = Platform.readSmallFile("/proc/self/statm") else { return 0 }
    let fields = text.split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
    return pages * Platform.pageSize
}
