/// A box around an iterator, so a `@Sendable` closure can advance it. A map's
/// driver calls its source from one task at a time.
@usableFromInline
final class IteratorBox<Iterator>: @unchecked Sendable {
    // @unchecked: only the map's driver advances it, from one task at a time.
    @usableFromInline var iterator: Iterator

    @inlinable
    init(_ iterator: Iterator) { self.iterator = iterator }
}

/// Inputs read for one chunk: how many, encoded, and the error the input
/// sequence threw after them, if it did.
@usableFromInline
struct InputBatch: Sendable {
    @usableFromInline var chunk: EncodedChunk?
    @usableFromInline var count: Int
    @usableFromInline var error: (any Error)?

    @usableFromInline
    init(chunk: EncodedChunk?, count: Int, error: (any Error)?) {
        self.chunk = chunk
        self.count = count
        self.error = error
    }
}

/// Where a map takes its inputs from: up to `count` more, already encoded.
@usableFromInline
struct AnyInputSource: Sendable {
    @usableFromInline let next: @Sendable (Int) async -> InputBatch
    /// The same without suspending, for a synchronous sequence: what lets a
    /// map be waited for from synchronous code.
    @usableFromInline let nextSynchronously: (@Sendable (Int) -> InputBatch)?

    @inlinable
    init(
        next: @escaping @Sendable (Int) async -> InputBatch,
        nextSynchronously: (@Sendable (Int) -> InputBatch)? = nil
    ) {
        self.next = next
        self.nextSynchronously = nextSynchronously
    }

    /// How many inputs there are, when the sequence is a collection.
    @inlinable
    static func knownCount<S: Sequence>(of inputs: S) -> Int? {
        inputs is any Collection ? inputs.underestimatedCount : nil
    }

    /// A source reading `inputs`. Inlinable, so the per-item loop is compiled
    /// for the concrete sequence type where the map is called.
    @inlinable
    static func reading<S: Sequence & Sendable>(_ inputs: S) -> @Sendable () -> AnyInputSource
    where S.Element: Codable & Sendable {
        {
            let box = IteratorBox(inputs.makeIterator())
            let read: @Sendable (Int) -> InputBatch = { count in
                var items: [S.Element] = []
                items.reserveCapacity(count)
                while items.count < count, let item = box.iterator.next() { items.append(item) }
                return batch(items, error: nil)
            }
            return AnyInputSource(next: read, nextSynchronously: read)
        }
    }

    /// A source reading an asynchronous sequence; the items read before it
    /// throws still run.
    @inlinable
    static func reading<S: AsyncSequence & Sendable>(async inputs: S) -> @Sendable () -> AnyInputSource
    where S.Element: Codable & Sendable {
        {
            let box = IteratorBox(inputs.makeAsyncIterator())
            return AnyInputSource { count in
                var items: [S.Element] = []
                do {
                    while items.count < count, let item = try await box.iterator.next() { items.append(item) }
                } catch {
                    return batch(items, error: error)
                }
                return batch(items, error: nil)
            }
        }
    }

    @inlinable
    static func batch<T: Encodable>(_ items: [T], error: (any Error)?) -> InputBatch {
        guard !items.isEmpty else { return InputBatch(chunk: nil, count: 0, error: error) }
        do {
            return InputBatch(chunk: try EncodedChunk.encode(items), count: items.count, error: error)
        } catch let encoding {
            return InputBatch(chunk: nil, count: 0, error: encoding)
        }
    }
}

/// The results of a pool's map, as they are computed (Python's `imap` and
/// `imap_unordered`).
///
/// Iterating starts the work; a bounded number of chunks is in flight at a
/// time (two per worker, more when chunks are small, and no more than 64 MiB
/// of encoded inputs), so memory stays flat. A failed item throws at its
/// place; ``results`` yields every item's `Result` instead, and
/// ``indexedResults`` each with its index in the input. If the input
/// sequence throws, every item read before it is delivered, then its error.
/// Cancelling the iterating task kills the workers running its chunks (they
/// are replaced); leaving the loop early drops the chunks not yet started.
public struct PoolMap<Output: Sendable>: AsyncSequence, Sendable {
    public typealias Element = Output

    let client: PoolClient
    let kind: Result<PoolWorkKind, any Error>
    let chunkSize: Int?
    let knownCount: Int?
    let ordered: Bool
    let makeSource: @Sendable () -> AnyInputSource
    let decode: ChunkDecoding<Output>.Decode
    var progress: (@Sendable (PoolProgress) -> Void)?

    init(
        client: PoolClient, kind: Result<PoolWorkKind, any Error>, chunkSize: Int?, knownCount: Int?, ordered: Bool,
        source: @escaping @Sendable () -> AnyInputSource, decode: @escaping ChunkDecoding<Output>.Decode
    ) {
        self.client = client
        self.kind = kind
        self.chunkSize = chunkSize
        self.knownCount = knownCount
        self.ordered = ordered
        makeSource = source
        self.decode = decode
    }

    public func makeAsyncIterator() -> Iterator {
        Iterator(driver: MapDriver(self))
    }

    /// Every item's result, in the map's order, failures included.
    public var results: PoolMapResults<Output> { PoolMapResults(map: self) }

    /// Every item's result with the item's index in the input (in the map's
    /// order: an unordered map yields them as they finish), so that "input
    /// 7 failed" needs no bookkeeping.
    public var indexedResults: PoolMapIndexedResults<Output> { PoolMapIndexedResults(map: self) }

    /// The same map, calling `handler` as items finish: after each chunk, and
    /// about ten times a second while chunks run, counting the items done
    /// inside them.
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
    /// - Throws: The first failed item's error; the input sequence's error.
    public func collect() async throws -> [Output] {
        try await MapDriver(self).collect()
    }

    /// Gathers every result into an array, blocking the calling thread
    /// (Python's `pool.map`, and `map_async(...).get(timeout)`), for
    /// synchronous programs: it starts no thread of Swift concurrency, so a
    /// single-threaded program stays so (and may go on forking).
    ///
    /// - Parameter timeout: How long to wait; `nil` waits as long as it takes.
    /// - Throws: The first failed item's error; `.timedOut` when `timeout`
    ///   passes first (the map's remaining work is cancelled);
    ///   `.invalidArgument` for a map over an asynchronous sequence.
    @available(*, noasync, message: "Use collect() in async code")
    public func get(timeout: Duration? = nil) throws -> [Output] {
        try MapDriver(self).collectBlocking(until: timeout.map { .now + $0 })
    }

    /// Iterates a ``PoolMap``. Results are handed out of a chunk held by the
    /// iterator itself, so the per-item step is inlined where you iterate;
    /// each value is let go once handed out.
    public struct Iterator: AsyncIteratorProtocol {
        @usableFromInline let driver: MapDriver<Output>
        /// What is left of the current chunk, back to front.
        @usableFromInline var values: [Output] = []
        @usableFromInline var results: [Result<Output, any Error>] = []

        init(driver: MapDriver<Output>) {
            self.driver = driver
        }

        @inlinable
        public mutating func next() async throws -> Output? {
            if let value = values.popLast() { return value }
            return try await nextFromNewChunk()
        }

        @usableFromInline
        mutating func nextFromNewChunk() async throws -> Output? {
            while true {
                if let result = results.popLast() { return try result.get() }
                guard let (_, chunk) = try await driver.nextChunk() else { return nil }
                switch chunk {
                case .values(let chunkValues):
                    values = chunkValues
                    values.reverse()
                    if let value = values.popLast() { return value }
                case .results(let chunkResults):
                    results = chunkResults
                    results.reverse()
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
        Iterator(inner: PoolMapIndexedResults<Output>.Iterator(driver: MapDriver(map)))
    }

    /// Iterates a ``PoolMapResults``.
    public struct Iterator: AsyncIteratorProtocol {
        var inner: PoolMapIndexedResults<Output>.Iterator

        public mutating func next() async throws -> Result<Output, any Error>? {
            try await inner.next()?.result
        }
    }
}

/// Every item's `Result` of a ``PoolMap`` with its index in the input.
public struct PoolMapIndexedResults<Output: Sendable>: AsyncSequence, Sendable {
    public typealias Element = (index: Int, result: Result<Output, any Error>)
    let map: PoolMap<Output>

    public func makeAsyncIterator() -> Iterator {
        Iterator(driver: MapDriver(map))
    }

    /// Iterates a ``PoolMapIndexedResults``.
    public struct Iterator: AsyncIteratorProtocol {
        let driver: MapDriver<Output>
        /// What is left of the current chunk, back to front, and the index after its last item.
        var chunk: [Result<Output, any Error>] = []
        var end = 0

        init(driver: MapDriver<Output>) {
            self.driver = driver
        }

        /// - Throws: Only the input sequence's error, after every item read before it.
        public mutating func next() async throws -> (index: Int, result: Result<Output, any Error>)? {
            while chunk.isEmpty {
                guard let (first, next) = try await driver.nextChunk() else { return nil }
                chunk = (0..<next.count).reversed().map { next[$0] }
                end = first + next.count
            }
            let result = chunk.removeLast()
            return (end - chunk.count - 1, result)
        }
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
