#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A box around an iterator, so a `@Sendable` closure can advance it. A map's
/// driver calls its source from one task at a time.
@usableFromInline
final class IteratorBox<Iterator>: @unchecked Sendable {
    @usableFromInline var iterator: Iterator

    @inlinable
    init(_ iterator: Iterator) { self.iterator = iterator }
}

/// Where a map takes its inputs from: up to `count` more, already encoded.
@usableFromInline
struct AnyInputSource: Sendable {
    @usableFromInline let next: @Sendable (Int) async throws -> (payload: [UInt8], count: Int)

    @inlinable
    init(next: @escaping @Sendable (Int) async throws -> (payload: [UInt8], count: Int)) {
        self.next = next
    }

    /// A source reading `inputs`. Inlinable, so the per-item loop is compiled
    /// for the concrete sequence type where the map is called.
    @inlinable
    static func reading<S: Sequence & Sendable>(_ inputs: S) -> @Sendable () -> AnyInputSource
    where S.Element: Codable & Sendable {
        {
            let box = IteratorBox(inputs.makeIterator())
            return AnyInputSource { count in
                var chunk: [S.Element] = []
                chunk.reserveCapacity(count)
                while chunk.count < count, let item = box.iterator.next() { chunk.append(item) }
                return (chunk.isEmpty ? [] : try WireEncoder().encode(chunk), chunk.count)
            }
        }
    }

    /// A source reading an asynchronous sequence.
    @inlinable
    static func reading<S: AsyncSequence & Sendable>(async inputs: S) -> @Sendable () -> AnyInputSource
    where S.Element: Codable & Sendable {
        {
            let box = IteratorBox(inputs.makeAsyncIterator())
            return AnyInputSource { count in
                var chunk: [S.Element] = []
                while chunk.count < count, let item = try await box.iterator.next() { chunk.append(item) }
                return (chunk.isEmpty ? [] : try WireEncoder().encode(chunk), chunk.count)
            }
        }
    }
}

/// The results of a pool's map, as they are computed (Python's `imap` and
/// `imap_unordered`).
///
/// Iterating starts the work; a bounded number of chunks is in flight at a
/// time (two per worker, more when chunks are small, and no more than 64 MiB
/// of encoded inputs), so memory stays flat. A failed item throws at its
/// place; ``results`` yields every item's `Result` instead. Cancelling the
/// iterating task kills the workers running its chunks (they are replaced);
/// leaving the loop early drops the chunks not yet started.
public struct PoolMap<Output: Sendable>: AsyncSequence, Sendable {
    public typealias Element = Output

    let pool: ProcessPool
    let typeName: Result<String, any Error>
    let label: String
    let chunkSize: Int?
    let knownCount: Int?
    let ordered: Bool
    let makeSource: @Sendable () -> AnyInputSource
    let decode: @Sendable (ChunkOutcome, Int) -> ChunkResults<Output>
    var progress: (@Sendable (PoolProgress) -> Void)?

    init(
        pool: ProcessPool, typeName: Result<String, any Error>, label: String, chunkSize: Int?, knownCount: Int?,
        ordered: Bool, source: @escaping @Sendable () -> AnyInputSource,
        decode: @escaping @Sendable (ChunkOutcome, Int) -> ChunkResults<Output>
    ) {
        self.pool = pool
        self.typeName = typeName
        self.label = label
        self.chunkSize = chunkSize
        self.knownCount = knownCount
        self.ordered = ordered
        makeSource = source
        self.decode = decode
    }

    public func makeAsyncIterator() -> Iterator {
        Iterator(driver: MapDriver(self))
    }

    /// Every item's result, in the same order, failures included.
    public var results: PoolMapResults<Output> { PoolMapResults(map: self) }

    /// The same map, calling `handler` each time a chunk of results arrives.
    ///
    /// The handler runs in the task that iterates the map; keep it short.
    public func reportingProgress(_ handler: @escaping @Sendable (PoolProgress) -> Void) -> PoolMap {
        var copy = self
        let previous = progress
        copy.progress = { update in
            previous?(update)
            handler(update)
        }
        return copy
    }

    /// The same map, and an asynchronous sequence of its progress that ends when the map does.
    public func progressUpdates() -> (map: PoolMap, updates: AsyncStream<PoolProgress>) {
        let (stream, continuation) = AsyncStream.makeStream(of: PoolProgress.self, bufferingPolicy: .bufferingNewest(1))
        let map = reportingProgress { update in
            continuation.yield(update)
            if update.isFinished { continuation.finish() }
        }
        return (map, stream)
    }

    /// The same map, drawing a progress bar on standard error while it runs,
    /// if standard error is a terminal (and nothing otherwise).
    ///
    /// - Parameter label: Printed before the bar.
    public func showingProgressBar(label: String = "") -> PoolMap {
        guard let bar = ProgressBar(label: label) else { return self }
        return reportingProgress { bar.draw($0) }
    }

    /// Gathers every result into an array (Python's `map`).
    ///
    /// - Throws: The first failed item's error.
    public func collect() async throws -> [Output] {
        try await MapDriver(self).collect()
    }

    /// Iterates a ``PoolMap``. Results are handed out of a chunk held by the
    /// iterator itself, so the per-item step is inlined where you iterate.
    public struct Iterator: AsyncIteratorProtocol {
        @usableFromInline let driver: MapDriver<Output>
        @usableFromInline var values: [Output] = []
        @usableFromInline var results: [Result<Output, any Error>] = []
        @usableFromInline var position = 0

        init(driver: MapDriver<Output>) {
            self.driver = driver
        }

        @inlinable
        public mutating func next() async throws -> Output? {
            if position < values.count {
                position += 1
                return values[position - 1]
            }
            return try await nextFromNewChunk()
        }

        @usableFromInline
        mutating func nextFromNewChunk() async throws -> Output? {
            while true {
                if position < results.count {
                    position += 1
                    return try results[position - 1].get()
                }
                guard let chunk = try await driver.nextChunk() else { return nil }
                position = 0
                switch chunk {
                case .values(let chunkValues):
                    values = chunkValues
                    results = []
                    if !values.isEmpty {
                        position = 1
                        return values[0]
                    }
                case .results(let chunkResults):
                    values = []
                    results = chunkResults
                }
            }
        }
    }
}

/// Every item's `Result` of a ``PoolMap``, in the map's order.
public struct PoolMapResults<Output: Sendable>: AsyncSequence, Sendable {
    public typealias Element = Result<Output, any Error>
    let map: PoolMap<Output>

    public func makeAsyncIterator() -> Iterator {
        Iterator(driver: MapDriver(map))
    }

    /// Iterates a ``PoolMapResults``.
    public struct Iterator: AsyncIteratorProtocol {
        let driver: MapDriver<Output>
        var chunk = ChunkResults<Output>.values([])
        var position = 0

        public mutating func next() async throws -> Result<Output, any Error>? {
            while position >= chunk.count {
                guard let next = try await driver.nextChunk() else { return nil }
                chunk = next
                position = 0
            }
            position += 1
            return chunk[position - 1]
        }
    }
}

/// Runs one iteration of a map: pulls inputs, keeps chunks in flight, and
/// hands out results in order (or as they finish).
@usableFromInline
final class MapDriver<Output: Sendable>: @unchecked Sendable {
    // @unchecked: one task iterates at a time; completions arrive through
    // `arrivals`, which is thread-safe.
    private let map: PoolMap<Output>
    private let source: AnyInputSource
    private let engine: PoolEngine
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
    /// Finished chunks not yet taken, with their item counts; decoded when
    /// taken. Ordered, entry `i` is chunk `nextToYield + i` (`nil` until it
    /// arrives); unordered, they are in the order they finished.
    private var finished = FrontQueue<(outcome: ChunkOutcome, items: Int)?>()
    /// The non-nil entries of `finished`.
    private var finishedCount = 0
    private var current = ChunkResults<Output>.values([])
    private var position = 0
    private var nanosecondsPerItem: Double?
    private var adaptiveSize = 1
    private var itemsDone = 0
    private let started = ContinuousClock.now
    /// Finished chunks (index, items, input bytes, outcome), as the engine thread completes them.
    private let arrivals = Inbox<(Int, Int, Int, ChunkOutcome)>()

    init(_ map: PoolMap<Output>) {
        self.map = map
        source = map.makeSource()
        engine = map.pool.engine
        window = 2 * map.pool.workerCount
    }

    deinit {
        if inFlight > 0 { engine.cancel(group: ObjectIdentifier(self), kill: false) }
    }

    /// The next chunk's results, or `nil` at the end of the map.
    @usableFromInline
    func nextChunk() async throws -> ChunkResults<Output>? {
        guard try await advance() else { return nil }
        defer { current = .values([]) }
        return current
    }

    /// Every remaining result, taking whole chunks at a time.
    func collect() async throws -> [Output] {
        var all: [Output] = []
        if let count = map.knownCount { all.reserveCapacity(count) }
        while true {
            switch current {
            case .values(let values) where values.count == position + 1:
                all.append(values[position])  // chunks of one item: cheaper than appending an array
            case .values(let values):
                all += position == 0 ? values : Array(values[position...])
            case .results(let results):
                for result in results[position...] { all.append(try result.get()) }
            }
            position = current.count
            if try await !advance() { return all }
        }
    }

    /// Makes the next chunk's results `current`, waiting for them if needed.
    /// Returns false at the end of the map.
    private func advance() async throws -> Bool {
        while true {
            if takeCompleted() { return true }
            try await refill()
            if inFlight == 0 && finishedCount == 0 {
                reportFinished()
                return false
            }
            if inFlight == 0 { continue }
            let group = ObjectIdentifier(self)
            let batch = await withTaskCancellationHandler {
                await arrivals.takeAll()
            } onCancel: { [engine, arrivals] in
                engine.cancel(group: group, kill: true)
                arrivals.wake()
            }
            try Task.checkCancellation()
            for (index, items, bytes, outcome) in batch {
                inFlightBytes -= bytes
                receive(outcome, index: index, items: items)
            }
        }
    }

    /// Files a finished chunk's results and reports progress.
    private func receive(_ outcome: ChunkOutcome, index: Int, items: Int) {
        inFlight -= 1
        if case .result(_, _, let nanoseconds) = outcome, items > 0 {
            let perItem = Double(nanoseconds) / Double(items)
            nanosecondsPerItem = nanosecondsPerItem.map { ($0 + perItem) / 2 } ?? perItem
        }
        if map.ordered {
            let offset = index - nextToYield
            while finished.count <= offset { finished.append(nil) }
            finished[offset] = (outcome, items)
        } else {
            finished.append((outcome, items))
        }
        finishedCount += 1
        itemsDone += items
        if !(exhausted && inFlight == 0) {
            map.progress?(
                PoolProgress(done: itemsDone, total: map.knownCount, elapsed: .now - started, isFinished: false))
        } else {
            reportFinished()
        }
    }

    private var reportedFinish = false

    private func reportFinished() {
        guard !reportedFinish else { return }
        reportedFinish = true
        map.progress?(PoolProgress(done: itemsDone, total: map.knownCount, elapsed: .now - started, isFinished: true))
    }

    /// Moves the next chunk's results (the next in order, or the next to
    /// finish) to `current`.
    private func takeCompleted() -> Bool {
        guard let (outcome, items) = finished.first ?? nil else { return false }
        finished.removeFirst()
        finishedCount -= 1
        if map.ordered { nextToYield += 1 }
        current = map.decode(outcome, items)
        position = 0
        return true
    }

    /// Reads inputs and submits chunks until the in-flight limit, all in one submission.
    private func refill() async throws {
        let typeName = try map.typeName.get()
        var submissions: [PoolEngine.Submission] = []
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
                inFlight + submissions.count < limit && finishedCount < limit
                    && inFlightBytes + submittedBytes < Self.inFlightByteLimit
            else { break }
            let (payload, count) = try await source.next(size)
            if count == 0 {
                exhausted = true
                break
            }
            let index = nextIndex
            let bytes = payload.count
            nextIndex += 1
            submittedBytes += bytes
            let arrivals = arrivals
            submissions.append(
                PoolEngine.Submission(
                    typeName: typeName, payload: payload, items: count, work: map.label, firstItem: firstItem,
                    group: ObjectIdentifier(self)
                ) { arrivals.put((index, count, bytes, $0)) })
            firstItem += count
        }
        guard !submissions.isEmpty else { return }
        _ = try engine.submit(submissions)
        inFlight += submissions.count
        inFlightBytes += submittedBytes
    }

    /// Explicit, or Python's rule for collections, or grown while items are fast.
    private func nextChunkSize() -> Int {
        if let size = map.chunkSize { return max(1, size) }
        if let count = map.knownCount {
            let workers = map.pool.workerCount
            return max(1, min(16_384, (count + 4 * workers - 1) / (4 * workers)))
        }
        if let perItem = nanosecondsPerItem {
            let target = 5_000_000 / max(perItem, 1)
            adaptiveSize = max(1, min(Int(min(target, 65_536)), adaptiveSize * 2))
        }
        return adaptiveSize
    }
}

/// The results of one chunk: plain values when every item succeeded (the
/// common case, decoded in bulk), one `Result` per item otherwise.
@usableFromInline
enum ChunkResults<Output: Sendable>: Sendable {
    case values([Output])
    case results([Result<Output, any Error>])

    @usableFromInline
    var count: Int {
        switch self {
        case .values(let values): values.count
        case .results(let results): results.count
        }
    }

    @usableFromInline
    subscript(index: Int) -> Result<Output, any Error> {
        switch self {
        case .values(let values): .success(values[index])
        case .results(let results): results[index]
        }
    }
}

/// How far a map has come.
public struct PoolProgress: Sendable, Hashable, CustomStringConvertible {
    /// Items whose results have arrived.
    public var done: Int
    /// All items, when the input is a collection; `nil` for other sequences.
    public var total: Int?
    /// Time since the map started.
    public var elapsed: Duration
    /// Whether every input has been read and every result has arrived.
    public var isFinished: Bool

    /// Items per second so far.
    public var rate: Double {
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        return seconds > 0 ? Double(done) / seconds : 0
    }

    /// The fraction done, when the total is known.
    public var fraction: Double? {
        total.map { $0 == 0 ? 1 : Double(done) / Double($0) }
    }

    /// The estimated time left at the current rate, when the total is known.
    public var estimatedTimeLeft: Duration? {
        guard let total, rate > 0 else { return nil }
        return .milliseconds(Int64(Double(max(0, total - done)) / rate * 1000))
    }

    public var description: String {
        var text = total.map { "\(done)/\($0)" } ?? "\(done)"
        text += " items, \(Int(rate.rounded()))/s"
        if let left = estimatedTimeLeft, !isFinished { text += ", ETA \(formatSeconds(left))" }
        return text
    }
}

func formatSeconds(_ duration: Duration) -> String {
    let seconds = duration.components.seconds
    if seconds >= 3600 { return "\(seconds / 3600)h\(seconds % 3600 / 60)m" }
    if seconds >= 60 { return "\(seconds / 60)m\(seconds % 60)s" }
    return "\(seconds)s"
}

/// A one-line progress bar on standard error, redrawn at most 10 times a second.
final class ProgressBar: @unchecked Sendable {
    // @unchecked: `lastDraw` is only touched by the map's iterating task.
    private let label: String
    private var lastDraw: ContinuousClock.Instant?

    /// `nil` when standard error is not a terminal: nothing is drawn then.
    init?(label: String) {
        guard isatty(2) != 0 else { return nil }
        self.label = label
    }

    func draw(_ progress: PoolProgress) {
        let now = ContinuousClock.now
        if !progress.isFinished, let lastDraw, now - lastDraw < .milliseconds(100) { return }
        lastDraw = now
        var line = "\r" + (label.isEmpty ? "" : label + " ")
        if let fraction = progress.fraction {
            let width = 30
            let filled = min(width, Int(fraction * Double(width)))
            line +=
                "[" + String(repeating: "#", count: filled)
                + String(repeating: ".", count: width - filled) + "] \(Int(fraction * 100))% "
        }
        line += progress.description + "\u{1B}[K"
        if progress.isFinished { line += "\n" }
        let bytes = Array(line.utf8)
        _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
    }
}
