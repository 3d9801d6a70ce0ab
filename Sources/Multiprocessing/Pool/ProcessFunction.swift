/// A function a ``ProcessPool`` maps over many inputs (the function you pass
/// to Python's `Pool.map`).
///
/// Like ``ProcessTask``, it is named by its type: declare it `internal` or
/// `public`. Inputs travel to the workers in chunks and results come back in
/// chunks; arrays of trivial values (numbers, bytes) are copied in bulk, so a
/// map over `Int`s costs nanoseconds per item.
///
/// ```swift
/// enum Square: ProcessFunction {
///     static func call(_ input: Int) -> Int { input * input }
/// }
///
/// try await withProcessPool { pool in
///     for try await square in pool.map(Square.self, 0..<1_000_000) { ... }
/// }
/// ```
///
/// A function of several arguments (Python's `starmap`) takes a `Codable`
/// struct as its input.
public protocol ProcessFunction: Sendable {
    /// What the function takes.
    associatedtype Input: Codable & Sendable
    /// What the function returns.
    associatedtype Output: Codable & Sendable

    /// Computes one result, in a worker process. May be `async` and may throw:
    /// an error fails this input only.
    static func call(_ input: Input) async throws -> Output

    /// Runs ``call(_:)`` over inputs `range` of a chunk. Provided; do not implement it.
    ///
    /// The default implementation is inlinable, so the compiler specialises
    /// it for each conforming type where the conformance is declared: the
    /// worker's per-item loop then calls `call` directly instead of through
    /// generic code resolved at run time.
    static func _callChunk(
        _ inputs: [Input], _ range: Range<Int>, _ status: _ItemStatus
    ) async -> _ChunkOutputs<Output>
}

extension ProcessFunction {
    @inlinable
    public static func _callChunk(
        _ inputs: [Input], _ range: Range<Int>, _ status: _ItemStatus
    ) async -> _ChunkOutputs<Output> {
        await _callEach(inputs, range, status, call)
    }
}

/// Calls `call` on inputs `range` until one throws, recording in `status`
/// which item runs.
@inlinable
public func _callEach<Input, Output>(
    _ inputs: [Input], _ range: Range<Int>, _ status: _ItemStatus, _ call: (Input) async throws -> Output
) async -> _ChunkOutputs<Output> {
    var outputs: [Output] = []
    outputs.reserveCapacity(range.count)
    for index in range {
        status.started(index)
        do {
            outputs.append(try await call(inputs[index]))
        } catch {
            return _ChunkOutputs(outputs: outputs, failedIndex: index, error: error)
        }
    }
    return _ChunkOutputs(outputs: outputs, failedIndex: nil, error: nil)
}

/// The results of ``ProcessFunction/_callChunk(_:_:_:)``: the outputs up to
/// the first failure, and that failure.
public struct _ChunkOutputs<Output> {
    /// The outputs of the inputs before the first failure.
    public var outputs: [Output]
    /// The index (in the chunk) of the first input whose call threw, if any.
    public var failedIndex: Int?
    /// What that call threw.
    public var error: (any Error)?

    /// Creates the results of a chunk.
    @inlinable
    public init(outputs: [Output], failedIndex: Int?, error: (any Error)?) {
        self.outputs = outputs
        self.failedIndex = failedIndex
        self.error = error
    }
}
