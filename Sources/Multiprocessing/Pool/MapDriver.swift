/// Runs one iteration of a map: reads inputs, keeps chunks in flight, and
/// hands out results in order (or as they finish).
///
/// It talks to its pool's ``PoolBackend`` only: submit chunks, cancel its
/// group, ask how many items of its running chunks are done.
@usableFromInline
final class MapDriver<Output: Sendable>: @unchecked Sendable {
    // @unchecked: one task iterates at a time; completions arrive through
    // `arrivals`, which is thread-safe.
    private let map: PoolMap<Output>
    private let source: AnyInputSource
    private let backend: any PoolBackend
    private let group = PoolGroup.make()
    private let window: Int
    /// Chunks submitted whose results have not arrived, and their inputs' encoded bytes.
    private var inFlight = 0
    private var inFlightBytes = 0
    /// Inputs in flight stay under this many encoded bytes (plus one chunk),
    /// whatever the chunk count allows: large items keep memory flat too.
    static var inFlightByteLimit: Int { 64 << 20 }
    private var nextIndex = 0
    private var nextToYield = 0
    private var firstItem = 0
    private var exhausted = false
    /// What the input sequence threw (or a bad argument), delivered after
    /// every result of the items read before it.
    private var inputError: (any Error)?
    /// Finished chunks not yet taken: their first item, item count and
    /// result; decoded when taken. Ordered, entry `i` is chunk
    /// `nextToYield + i` (`nil` until it arrives); unordered, they are in
    /// the order they finished.
    private var finished = FrontQueue<(first: Int, items: Int, result: ChunkResult)?>()
    /// The non-nil entries of `finished`.
    private var finishedCount = 0
    private var nanosecondsPerItem: Double?
    private var adaptiveSize = 1
    private var itemsDone = 0
    private let started = ContinuousClock.now
    private var reportedFinish = false
    /// Wakes the iterating task about ten times a second while a progress handler waits for news.
    private var ticker: Task<Void, Never>?
    /// Finished chunks (index, first item, items, input bytes, result), as the backend completes them.
    private let arrivals = Inbox<(Int, Int, Int, Int, ChunkResult)>()

    init(_ map: PoolMap<Output>) {
        self.map = map
        source = map.makeSource()
        backend = map.client.backend
        window = 2 * backend.workerCount
        if let size = map.chunkSize, size < 1 {
            inputError = MultiprocessingError(.invalidArgument, "a map's chunkSize must be at least 1, not \(size)")
            exhausted = true
        }
    }

    deinit {
        ticker?.cancel()
        if inFlight > 0 { backend.cancel(group, stopRunning: false) }
    }

    /// The next chunk's first item index and results, or `nil` at the end of the map.
    ///
    /// - Throws: The input sequence's error, once everything read before it was handed out.
    @usableFromInline
    func nextChunk() async throws -> (Int, ChunkResults<Output>)? {
        _ = try map.kind.get()
        while true {
            if let taken = takeCompleted() { return taken }
            var plan = RefillPlan()
            while let size = nextRead(&plan) { accept(await source.next(size), into: &plan) }
            try submit(plan)
            if try atEnd() { return nil }
            if inFlight > 0 { try await waitForArrivals() }
        }
    }

    /// ``nextChunk()`` for a thread that may block, until `deadline`.
    private func nextChunkBlocking(until deadline: ContinuousClock.Instant?) throws -> (Int, ChunkResults<Output>)? {
        guard let read = source.nextSynchronously else {
            throw MultiprocessingError(
                .invalidArgument, "get() waits for maps over synchronous sequences; await collect() for this one")
        }
        _ = try map.kind.get()
        while true {
            if let taken = takeCompleted() { return taken }
            var plan = RefillPlan()
            while let size = nextRead(&plan) { accept(read(size), into: &plan) }
            try submit(plan)
            if try atEnd() { return nil }
            guard inFlight > 0 else { continue }
            var wakeAt = deadline
            if map.progress != nil { wakeAt = min(deadline ?? .now + .milliseconds(100), .now + .milliseconds(100)) }
            let batch = arrivals.takeAll(until: wakeAt)
            if let deadline, batch.isEmpty, deadline <= .now {
                backend.cancel(group, stopRunning: true)
                throw MultiprocessingError(.timedOut, "the map did not finish in time")
            }
            file(batch)
        }
    }

    /// Every remaining result, taking whole chunks at a time.
    func collect() async throws -> [Output] {
        var all: [Output] = []
        if let count = map.knownCount { all.reserveCapacity(count) }
        while let (_, chunk) = try await nextChunk() { try Self.append(chunk, to: &all) }
        return all
    }

    /// ``collect()`` on a thread that may block.
    func collectBlocking(until deadline: ContinuousClock.Instant?) throws -> [Output] {
        var all: [Output] = []
        if let count = map.knownCount { all.reserveCapacity(count) }
        while let (_, chunk) = try nextChunkBlocking(until: deadline) { try Self.append(chunk, to: &all) }
        return all
    }

    private static func append(_ chunk: ChunkResults<Output>, to all: inout [Output]) throws {
        switch chunk {
        case .values(let values) where values.count == 1:
            all.append(values[0])  // chunks of one item: cheaper than appending an array
        case .values(let values):
            all += values
        case .results(let results):
            for result in results { all.append(try result.get()) }
        }
    }

    /// Whether the map has ended: nothing in flight, nothing to hand out.
    /// - Throws: The input sequence's error, once.
    private func atEnd() throws -> Bool {
        guard inFlight == 0 && finishedCount == 0 else { return false }
        reportFinished()
        ticker?.cancel()
        if let inputError {
            self.inputError = nil
            throw inputError
        }
        return true
    }

    private func waitForArrivals() async throws {
        if map.progress != nil && ticker == nil {
            ticker = Task { [arrivals] in
                while (try? await Task.sleep(for: .milliseconds(100))) != nil { arrivals.wake() }
            }
        }
        let batch = await withTaskCancellationHandler {
            await arrivals.takeAll()
        } onCancel: { [backend, group, arrivals] in
            backend.cancel(group, stopRunning: true)
            arrivals.wake()
        }
        try Task.checkCancellation()
        file(batch)
    }

    private func file(_ batch: [(Int, Int, Int, Int, ChunkResult)]) {
        for (index, first, items, bytes, result) in batch {
            inFlightBytes -= bytes
            receive(result, index: index, first: first, items: items)
        }
        if batch.isEmpty { reportProgress() }
    }

    /// Files a finished chunk's result and reports progress.
    private func receive(_ result: ChunkResult, index: Int, first: Int, items: Int) {
        inFlight -= 1
        if result.nanoseconds > 0, items > 0 {
            let perItem = Double(result.nanoseconds) / Double(items)
            nanosecondsPerItem = nanosecondsPerItem.map { ($0 + perItem) / 2 } ?? perItem
        }
        if map.ordered {
            let offset = index - nextToYield
            while finished.count <= offset { finished.append(nil) }
            finished[offset] = (first, items, result)
        } else {
            finished.append((first, items, result))
        }
        finishedCount += 1
        itemsDone += items
        if exhausted && inFlight == 0 { reportFinished() } else { reportProgress() }
    }

    private func reportProgress() {
        guard let progress = map.progress, !reportedFinish else { return }
        let partial = inFlight > 0 ? backend.partialItems(of: group) : 0
        progress(
            PoolProgress(
                done: itemsDone + partial, total: map.knownCount, elapsed: .now - started, isFinished: false))
    }

    private func reportFinished() {
        guard !reportedFinish else { return }
        reportedFinish = true
        map.progress?(PoolProgress(done: itemsDone, total: map.knownCount, elapsed: .now - started, isFinished: true))
    }

    /// The next chunk's results (the next in order, or the next to finish), decoded.
    private func takeCompleted() -> (Int, ChunkResults<Output>)? {
        guard let (first, items, result) = finished.first ?? nil else { return nil }
        finished.removeFirst()
        finishedCount -= 1
        if map.ordered { nextToYield += 1 }
        return (first, map.decode(result, items, first))
    }

    /// The chunks one refill reads: inputs are read, and chunks made, until
    /// the in-flight limits; then they are submitted all at once.
    private struct RefillPlan {
        var chunks: [PoolChunk] = []
        var bytes = 0
        var started = false
    }

    /// How many inputs to read next for `plan`, or `nil` when it is full.
    private func nextRead(_ plan: inout RefillPlan) -> Int? {
        guard !exhausted else { return nil }
        let size = nextChunkSize()
        // Small chunks need many in flight to keep the workers busy; large ones
        // few. Until the first result tells how fast items are, a few.
        let limit = nanosecondsPerItem == nil ? window : max(window, min(2048, 65536 / size))
        // Refill in batches: once half the window has drained, fill it again.
        if !plan.started && inFlight > limit / 2 { return nil }
        plan.started = true
        guard
            inFlight + plan.chunks.count < limit && finishedCount < limit
                && inFlightBytes + plan.bytes < Self.inFlightByteLimit
        else { return nil }
        return size
    }

    /// Makes a chunk of what was read.
    private func accept(_ batch: InputBatch, into plan: inout RefillPlan) {
        if let error = batch.error {
            inputError = error
            exhausted = true
        }
        guard let encoded = batch.chunk, batch.count > 0, let kind = try? map.kind.get() else {
            exhausted = true
            batch.chunk?.close()
            return
        }
        let index = nextIndex
        let first = firstItem
        let bytes = encoded.payload.count
        let count = batch.count
        nextIndex += 1
        firstItem += count
        plan.bytes += bytes
        let arrivals = arrivals
        plan.chunks.append(
            PoolChunk(
                kind: kind, payload: encoded.payload, descriptors: encoded.descriptors, items: count, firstItem: first,
                group: group
            ) { arrivals.put((index, first, count, bytes, $0)) })
    }

    private func submit(_ plan: RefillPlan) throws {
        guard !plan.chunks.isEmpty else { return }
        do {
            try backend.submit(plan.chunks)
        } catch {
            for chunk in plan.chunks { for fd in chunk.descriptors { Platform.close(fd) } }
            throw error
        }
        inFlight += plan.chunks.count
        inFlightBytes += plan.bytes
    }

    /// Explicit, or grown from 1 while items are fast until a chunk takes
    /// about 5 ms; for a collection, no larger than Python's rule (a quarter
    /// of each worker's share). Slow items thus travel alone, so a crash or
    /// a timeout touches only its own item, and fast ones in large chunks.
    private func nextChunkSize() -> Int {
        if let size = map.chunkSize { return size }
        var cap = 65_536
        if let count = map.knownCount {
            let workers = backend.workerCount
            cap = max(1, min(16_384, (count + 4 * workers - 1) / (4 * workers)))
        }
        if let perItem = nanosecondsPerItem {
            let target = 5_000_000 / max(perItem, 1)
            adaptiveSize = max(1, min(Int(min(target, Double(cap))), adaptiveSize * 2))
        }
        return min(adaptiveSize, cap)
    }
}
