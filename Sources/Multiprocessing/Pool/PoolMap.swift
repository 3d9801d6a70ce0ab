/// Where a map takes its inputs from, a chunk at a time.
class InputSource<Input: Sendable>: @unchecked Sendable {
    // @unchecked: a map's driver uses its source from one task at a time.
    /// Up to `count` more inputs; an empty array at the end.
    func next(_ count: Int) async throws -> [Input] { [] }
}

final class SyncInputSource<S: Sequence>: InputSource<S.Element>, @unchecked Sendable where S.Element: Sendable {
    // @unchecked: see InputSource.
    private var iterator: S.Iterator

    init(_ sequence: S) { iterator = sequence.makeIterator() }

    override func next(_ count: Int) async throws -> [S.Element] {
        var chunk: [S.Element] = []
        chunk.reserveCapacity(count)
        while chunk.count < count, let item = iterator.next() { chunk.append(item) }
        return chunk
    }
}

final class AsyncInputSource<S: AsyncSequence>: InputSource<S.Element>, @unchecked Sendable
where S.Element: Sendable {
    // @unchecked: see InputSource.
    private var iterator: S.AsyncIterator

    init(_ sequence: S) { iterator = sequence.makeAsyncIterator() }

    override func next(_ count: Int) async throws -> [S.Element] {
        var chunk: [S.Element] = []
        while chunk.count < count, let item = try await iterator.next() { chunk.append(item) }
        return chunk
    }
}

/// The results of a pool's map, as they are computed (Python's `imap` and
/// `imap_unordered`).
///
/// Iterating starts the work; a bounded number of chunks is in flight at a
/// time (two per worker, more when chunks are small), so memory stays flat. A failed item throws at its place; ``results`` yields every item's
/// `Result` instead. Cancelling the iterating task kills the workers running
/// its chunks (they are replaced); leaving the loop early drops the chunks
/// not yet started.
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

    init<Input: Codable & Sendable>(
        pool: ProcessPool, typeName: Result<String, any Error>, label: String, chunkSize: Int?, knownCount: Int?,
        ordered: Bool, source: @escaping @Sendable () -> InputSource<Input>,
        decode: @escaping @Sendable (ChunkOutcome, Int) -> ChunkResults<Output>
    ) {
        self.pool = pool
        self.typeName = typeName
        self.label = label
        self.chunkSize = chunkSize
        self.knownCount = knownCount
        self.ordered = ordered
        makeSource = { AnyInputSource(source()) }
        self.decode = decode
    }

    public func makeAsyncIterator() -> Iterator {
        Iterator(driver: MapDriver(self))
    }

    /// Every item's result, in the same order, failures included.
    public var results: PoolMapResults<Output> { PoolMapResults(map: self) }

    /// Gathers every result into an array (Python's `map`).
    ///
    /// - Throws: The first failed item's error.
    public func collect() async throws -> [Output] {
        try await MapDriver(self).collect()
    }

    /// Iterates a ``PoolMap``.
    public struct Iterator: AsyncIteratorProtocol {
        let driver: MapDriver<Output>

        public mutating func next() async throws -> Output? {
            try await driver.next()?.get()
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

        public mutating func next() async throws -> Result<Output, any Error>? {
            try await driver.next()
        }
    }
}

/// An input source that encodes its chunks, so the driver needs no input type.
struct AnyInputSource: Sendable {
    let next: @Sendable (Int) async throws -> (payload: [UInt8], count: Int)

    init<Input: Codable & Sendable>(_ source: InputSource<Input>) {
        next = { count in
            let chunk = try await source.next(count)
            return (chunk.isEmpty ? [] : try WireEncoder().encode(chunk), chunk.count)
        }
    }
}

/// Runs one iteration of a map: pulls inputs, keeps chunks in flight, and
/// hands out results in order (or as they finish).
final class MapDriver<Output: Sendable>: @unchecked Sendable {
    // @unchecked: one task iterates at a time; completions arrive through
    // `stream`, whose continuation is thread-safe.
    private let map: PoolMap<Output>
    private let source: AnyInputSource
    private let engine: PoolEngine
    private let window: Int
    private var inFlight: [Int: (job: ChunkJob, items: Int)] = [:]
    private var nextIndex = 0
    private var nextToYield = 0
    private var firstItem = 0
    private var exhausted = false
    private var completed: [Int: ChunkResults<Output>] = [:]
    private var finishedOrder: [Int] = []
    private var current = ChunkResults<Output>.values([])
    private var position = 0
    private var nanosecondsPerItem: Double?
    private var adaptiveSize = 1
    private let stream: AsyncStream<(Int, ChunkOutcome)>
    private let continuation: AsyncStream<(Int, ChunkOutcome)>.Continuation
    private var arrivals: AsyncStream<(Int, ChunkOutcome)>.Iterator

    init(_ map: PoolMap<Output>) {
        self.map = map
        source = map.makeSource()
        engine = map.pool.engine
        window = 2 * map.pool.workerCount
        (stream, continuation) = AsyncStream.makeStream(of: (Int, ChunkOutcome).self)
        arrivals = stream.makeAsyncIterator()
    }

    deinit {
        for (job, _) in inFlight.values { engine.cancel(job, kill: false) }
        continuation.finish()
    }

    func next() async throws -> Result<Output, any Error>? {
        while true {
            if position < current.count {
                position += 1
                return current[position - 1]
            }
            if try await !advance() { return nil }
        }
    }

    /// Every remaining result, taking whole chunks at a time.
    func collect() async throws -> [Output] {
        var all: [Output] = []
        if let count = map.knownCount { all.reserveCapacity(count) }
        while true {
            switch current {
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
            if inFlight.isEmpty && completed.isEmpty { return false }
            if inFlight.isEmpty { continue }
            let arrival = await withTaskCancellationHandler {
                await arrivals.next()
            } onCancel: { [engine, inFlight] in
                for (job, _) in inFlight.values { engine.cancel(job, kill: true) }
            }
            try Task.checkCancellation()
            guard let (index, outcome) = arrival, let entry = inFlight.removeValue(forKey: index) else { continue }
            if case .result(_, _, let nanoseconds) = outcome, entry.items > 0 {
                let perItem = Double(nanoseconds) / Double(entry.items)
                nanosecondsPerItem = nanosecondsPerItem.map { ($0 + perItem) / 2 } ?? perItem
            }
            completed[index] = map.decode(outcome, entry.items)
            finishedOrder.append(index)
        }
    }

    /// Moves the next chunk's results (the next in order, or the next to
    /// finish) to `current`.
    private func takeCompleted() -> Bool {
        let index: Int
        if map.ordered {
            guard completed[nextToYield] != nil else { return false }
            index = nextToYield
            nextToYield += 1
        } else {
            guard let first = finishedOrder.first(where: { completed[$0] != nil }) else { return false }
            index = first
            finishedOrder.removeAll { $0 == first }
        }
        current = completed.removeValue(forKey: index) ?? .values([])
        position = 0
        return true
    }

    private func refill() async throws {
        let typeName = try map.typeName.get()
        while !exhausted {
            let size = nextChunkSize()
            // Small chunks need many in flight to keep the workers busy; large ones few.
            let limit = max(window, min(512, 4096 / size))
            guard inFlight.count < limit && completed.count < limit else { return }
            let (payload, count) = try await source.next(size)
            if count == 0 {
                exhausted = true
                return
            }
            let index = nextIndex
            nextIndex += 1
            let label = "\(map.label), items \(firstItem)..<\(firstItem + count)"
            firstItem += count
            let continuation = continuation
            let job = try engine.submit(
                typeName: typeName, payload: payload, items: count, label: label,
                completion: { continuation.yield((index, $0)) })
            inFlight[index] = (job, count)
        }
    }

    /// Explicit, or Python's rule for collections, or grown while items are fast.
    private func nextChunkSize() -> Int {
        if let size = map.chunkSize { return max(1, size) }
        if let count = map.knownCount {
            let workers = map.pool.workerCount
            return max(1, min(65_536, (count + 4 * workers - 1) / (4 * workers)))
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
enum ChunkResults<Output: Sendable>: Sendable {
    case values([Output])
    case results([Result<Output, any Error>])

    var count: Int {
        switch self {
        case .values(let values): values.count
        case .results(let results): results.count
        }
    }

    subscript(index: Int) -> Result<Output, any Error> {
        switch self {
        case .values(let values): .success(values[index])
        case .results(let results): results[index]
        }
    }
}
