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
        while true {
            if let taken = takeCompleted() { return taken }
            try await refill()
            if inFlight == 0 && finishedCount == 0 {
                reportFinished()
                ticker?.cancel()
                if let inputError {
                    self.inputError = nil
                    throw inputError
                }
                return nil
            }
            if inFlight == 0 { continue }
            try await waitForArrivals()
        }
    }

    /// Every remaining result, taking whole chunks at a time.
    func collect() async throws -> [Output] {
        var all: [Output] = []
        if let count = map.knownCount { all.reserveCapacity(count) }
        while let (_, chunk) = try await nextChunk() {
            switch chunk {
            case .values(let values) where values.count == 1:
                all.append(values[0])  // chunks of one item: cheaper than appending an array
            case .values(let values):
                all += values
            case .results(let results):
                for result in results { all.append(try result.get()) }
            }
        }
        return all
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

    /// Reads inputs and submits chunks until the in-flight limits, all in one submission.
    private func refill() async throws {
        let kind = try map.kind.get()
        var chunks: [PoolChunk] = []
        var submittedBytes = 0
        var refilling = false
        while !exhausted {
            let size = nextChunkSize()
            // Small chunks need many in flight to keep the workers busy; large ones few.
            let limit = max(window, min(2048, 65536 / size))
            // Refill in batches: once half the window has drained, fill it again.
            if !refilling && inFlight > limit / 2 { break }
            refilling = true
            guard
                inFlight + chunks.count < limit && finishedCount < limit
                    && inFlightBytes + submittedBytes < Self.inFlightByteLimit
            else { break }
            let batch = await source.next(size)
            if let error = batch.error {
                inputError = error
                exhausted = true
            }
            guard let encoded = batch.chunk, batch.count > 0 else {
                exhausted = true
                break
            }
            let index = nextIndex
            let first = firstItem
            let bytes = encoded.payload.count
            let count = batch.count
            nextIndex += 1
            submittedBytes += bytes
            let arrivals = arrivals
            chunks.append(
                PoolChunk(
                    kind: kind, payload: encoded.payload, descriptors: encoded.descriptors, items: count,
                    firstItem: first, group: group
                ) { arrivals.put((index, first, count, bytes, $0)) })
            firstItem += count
        }
        guard !chunks.isEmpty else { return }
        do {
            try backend.submit(chunks)
        } catch {
            for chunk in chunks { for fd in chunk.descriptors { Platform.close(fd) } }
            throw error
        }
        inFlight += chunks.count
        inFlightBytes += submittedBytes
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
