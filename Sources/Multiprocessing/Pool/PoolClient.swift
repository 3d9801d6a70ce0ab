#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// The layer above a ``PoolBackend``: turns tasks and inputs into chunks,
/// and chunk results back into values. ``ProcessPool`` and ``ForkingPool``
/// are made of one; another backend (a cluster) gets the same maps,
/// submits, progress and cancellation by making one too.
@_spi(PoolBackend)
public struct PoolClient: Sendable {
    /// Where the chunks run.
    public let backend: any PoolBackend

    /// A client of `backend`.
    public init(backend: any PoolBackend) {
        self.backend = backend
    }

    /// Submits one task value (Python's `apply_async`); see ``ProcessPool/submit(_:onCompletion:)``.
    public func submit<T: ProcessTask>(
        _ task: T, onCompletion: (@Sendable (Result<T.Output, any Error>) -> Void)? = nil
    ) throws -> PoolTask<T.Output> {
        try submitOne(
            kind: PoolWorkKind(typeName: TaskName.resolvable(TaskChunk<T>.self), label: String(reflecting: T.self)),
            encoded: EncodedChunk.encode([task]), decode: ChunkDecoding.tasks(T.self), onCompletion: onCompletion)
    }

    /// Submits one input of a work kind whose chunks decode with `decode`.
    func submitOne<Output: Sendable>(
        kind: PoolWorkKind, encoded: EncodedChunk, decode: @escaping ChunkDecoding<Output>.Decode,
        onCompletion: (@Sendable (Result<Output, any Error>) -> Void)?
    ) throws -> PoolTask<Output> {
        let group = PoolGroup.make()
        let handle = PoolTask<Output>(backend: backend, group: group)
        let chunk = PoolChunk(
            kind: kind, payload: encoded.payload, descriptors: encoded.descriptors, items: 1, firstItem: nil,
            group: group
        ) { result in
            let value = decode(result, 1, nil)[0]
            // As in Python: the callback has run when the result can be seen.
            onCompletion?(value)
            handle.outcome.fulfill(value)
        }
        do {
            try backend.submit([chunk])
        } catch {
            encoded.close()
            throw error
        }
        return handle
    }

    /// A map over a sequence of inputs; see ``ProcessPool/map(_:_:chunkSize:)``.
    @inlinable
    public func map<F: ProcessFunction, S: Sequence & Sendable>(
        _ function: F.Type, _ inputs: S, chunkSize: Int?, ordered: Bool
    ) -> PoolMap<F.Output> where S.Element == F.Input {
        functionMap(
            F.self, source: AnyInputSource.reading(inputs), knownCount: AnyInputSource.knownCount(of: inputs),
            chunkSize: chunkSize,
            ordered: ordered)
    }

    /// A map over an asynchronous sequence of inputs.
    @inlinable
    public func map<F: ProcessFunction, S: AsyncSequence & Sendable>(
        _ function: F.Type, _ inputs: S, chunkSize: Int?, ordered: Bool
    ) -> PoolMap<F.Output> where S.Element == F.Input {
        functionMap(
            F.self, source: AnyInputSource.reading(async: inputs), knownCount: nil, chunkSize: chunkSize,
            ordered: ordered)
    }

    /// A map whose items are task values.
    @inlinable
    public func map<T: ProcessTask, S: Sequence & Sendable>(
        tasks: S, chunkSize: Int?, ordered: Bool
    ) -> PoolMap<T.Output> where S.Element == T {
        taskMap(
            T.self, source: AnyInputSource.reading(tasks), knownCount: AnyInputSource.knownCount(of: tasks),
            chunkSize: chunkSize,
            ordered: ordered)
    }

    @usableFromInline
    func functionMap<F: ProcessFunction>(
        _ function: F.Type, source: @escaping @Sendable () -> AnyInputSource, knownCount: Int?, chunkSize: Int?,
        ordered: Bool
    ) -> PoolMap<F.Output> {
        makeMap(
            kind: Result {
                PoolWorkKind(
                    typeName: try TaskName.resolvable(FunctionChunk<F>.self), label: String(reflecting: F.self))
            }, source: source, knownCount: knownCount, chunkSize: chunkSize, ordered: ordered,
            decode: ChunkDecoding.values(F.Output.self))
    }

    @usableFromInline
    func taskMap<T: ProcessTask>(
        _ task: T.Type, source: @escaping @Sendable () -> AnyInputSource, knownCount: Int?, chunkSize: Int?,
        ordered: Bool
    ) -> PoolMap<T.Output> {
        makeMap(
            kind: Result {
                PoolWorkKind(typeName: try TaskName.resolvable(TaskChunk<T>.self), label: String(reflecting: T.self))
            }, source: source, knownCount: knownCount, chunkSize: chunkSize, ordered: ordered,
            decode: ChunkDecoding.tasks(T.self))
    }

    /// The one body of every map.
    func makeMap<Output: Sendable>(
        kind: Result<PoolWorkKind, any Error>, source: @escaping @Sendable () -> AnyInputSource, knownCount: Int?,
        chunkSize: Int?, ordered: Bool, decode: @escaping ChunkDecoding<Output>.Decode
    ) -> PoolMap<Output> {
        PoolMap(
            client: self, kind: kind, chunkSize: chunkSize, knownCount: knownCount, ordered: ordered, source: source,
            decode: decode)
    }
}

/// A chunk's inputs, encoded, with the descriptors they refer to.
@usableFromInline
struct EncodedChunk: Sendable {
    @usableFromInline let payload: [UInt8]
    /// Copies owned by the chunk (the objects they came from may be gone
    /// before the chunk reaches a worker).
    @usableFromInline let descriptors: [Int32]

    @usableFromInline
    init(payload: [UInt8], descriptors: [Int32]) {
        self.payload = payload
        self.descriptors = descriptors
    }

    /// Encodes `items`. Inlinable, so the encoding is specialised where the map is made.
    @inlinable
    static func encode<T: Encodable>(_ items: [T]) throws -> EncodedChunk {
        do {
            return EncodedChunk(payload: try WireEncoder().encode(items), descriptors: [])
        } catch let error as MultiprocessingError where error.code == .encodingFailed {
            // Inputs that hold shared memory, queues, locks or connections
            // encode only with somewhere to put their descriptors.
            return try encodeWithDescriptors(items)
        }
    }

    @usableFromInline
    static func encodeWithDescriptors<T: Encodable>(_ items: [T]) throws -> EncodedChunk {
        let transfer = DescriptorTransfer()
        var encoder = WireEncoder()
        encoder.userInfo[.descriptorTransfer] = transfer
        let payload = try encoder.encode(items)
        var copies: [Int32] = []
        for fd in transfer.descriptors {
            do {
                copies.append(try Platform.duplicate(fd, of: "a descriptor in a pool input"))
            } catch {
                for fd in copies { Platform.close(fd) }
                throw error
            }
        }
        return EncodedChunk(payload: payload, descriptors: copies)
    }

    /// Closes the copies, for a chunk that was not taken.
    func close() {
        for fd in descriptors { Platform.close(fd) }
    }
}

/// Turns a ``ChunkResult`` back into values of the work's output type.
enum ChunkDecoding<Output: Sendable> {
    /// Decodes a chunk of `items` items whose first item has index `firstItem` in its map.
    typealias Decode = @Sendable (ChunkResult, _ items: Int, _ firstItem: Int?) -> ChunkResults<Output>

    /// For work whose successful items come back as an array of values
    /// (functions and closures), and one outcome each after a failure.
    static func values(_ output: Output.Type) -> Decode where Output: Decodable {
        { result, items, _ in
            if result.pieces.count == 1, case .values(let range, let bytes) = result.pieces[0], range.count == items {
                do {
                    let values = try bytes.withUnsafeBytes { try WireDecoder().decode([Output].self, from: $0) }
                    if values.count == items { return .values(values) }
                    return .results(Array(repeating: .failure(tooFew), count: items))
                } catch {
                    return .results(Array(repeating: .failure(error), count: items))
                }
            }
            return .results(
                perItem(result, items: items, decodeValues: decodeArray) {
                    try WireDecoder().decode(Output.self, from: $0)
                })
        }
    }

    private static func decodeArray(_ bytes: ArraySlice<UInt8>) throws -> [Output] where Output: Decodable {
        try bytes.withUnsafeBytes { try WireDecoder().decode([Output].self, from: $0) }
    }

    /// For task values, whose items come back as outcomes.
    static func tasks<T: ProcessTask>(_ task: T.Type) -> Decode where T.Output == Output {
        { result, items, _ in
            .results(
                perItem(result, items: items, decodeValues: { _ in throw unexpectedValues }) {
                    try T._decodeOutput($0)
                })
        }
    }

    private static var unexpectedValues: MultiprocessingError {
        MultiprocessingError(.decodingFailed, "a worker sent plain values for task values")
    }

    private static var tooFew: MultiprocessingError {
        MultiprocessingError(.decodingFailed, "a worker sent too few results")
    }

    /// One `Result` per item, from every kind of piece.
    private static func perItem(
        _ result: ChunkResult, items: Int, decodeValues: (ArraySlice<UInt8>) throws -> [Output],
        decodeOne: ([UInt8]) throws -> Output
    ) -> [Result<Output, any Error>] {
        var all: [Result<Output, any Error>] = []
        all.reserveCapacity(items)
        for piece in result.pieces {
            switch piece {
            case .values(let range, let bytes):
                do {
                    let values = try decodeValues(bytes)
                    guard values.count == range.count else { throw tooFew }
                    all += values.map { .success($0) }
                } catch {
                    all += repeatElement(.failure(error), count: range.count)
                }
            case .outcomes(let range, let bytes):
                guard
                    let outcomes = try? bytes.withUnsafeBytes({ try WireDecoder().decode([Outcome].self, from: $0) }),
                    outcomes.count == range.count
                else {
                    let error = MultiprocessingError(.decodingFailed, "a worker's results could not be decoded")
                    all += repeatElement(.failure(error), count: range.count)
                    continue
                }
                for outcome in outcomes {
                    switch outcome {
                    case .success(let bytes): all.append(Result { try decodeOne(bytes) })
                    case .failure(let envelope): all.append(.failure(envelope.error))
                    }
                }
            case .failed(let range, let error):
                all += repeatElement(.failure(error), count: range.count)
            }
        }
        while all.count < items { all.append(.failure(tooFew)) }
        return all
    }
}
