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

    /// Runs ``call(_:)`` over a chunk of inputs. Provided; do not implement it.
    ///
    /// The default implementation is inlinable, so the compiler specialises
    /// it for each conforming type where the conformance is declared: the
    /// worker's per-item loop then calls `call` directly instead of through
    /// generic code resolved at run time.
    static func _callChunk(_ inputs: [Input]) async -> _ChunkOutputs<Output>
}

extension ProcessFunction {
    @inlinable
    public static func _callChunk(_ inputs: [Input]) async -> _ChunkOutputs<Output> {
        await _callEach(inputs, call)
    }
}

/// Calls `call` on each input until one throws.
@inlinable
public func _callEach<Input, Output>(
    _ inputs: [Input], _ call: (Input) async throws -> Output
) async -> _ChunkOutputs<Output> {
    var outputs: [Output] = []
    outputs.reserveCapacity(inputs.count)
    for index in inputs.indices {
        do {
            outputs.append(try await call(inputs[index]))
        } catch {
            return _ChunkOutputs(outputs: outputs, failedIndex: index, error: error)
        }
    }
    return _ChunkOutputs(outputs: outputs, failedIndex: nil, error: nil)
}

/// The results of ``ProcessFunction/_callChunk(_:)``: the outputs up to the
/// first failure, and that failure.
public struct _ChunkOutputs<Output> {
    /// The outputs of the inputs before the first failure.
    public var outputs: [Output]
    /// The index of the first input whose call threw, if any.
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

/// Once per worker, before its first task: loads what every task of that
/// worker may use (a model, an open file, a connection to a C library).
///
/// ```swift
/// struct LoadModel: WorkerInitializer {
///     var path: String
///     func makeState() throws -> Model { try Model(contentsOf: path) }
/// }
/// // in a task or function, in the worker:
/// let model = PoolWorker.state(as: Model.self)!
/// ```
///
/// If it throws, the pool stops starting workers and every waiting and later
/// call fails with `.initializerFailed`, carrying the error: a broken
/// initializer is reported once, clearly, rather than retried forever.
public protocol WorkerInitializer: Codable, Sendable {
    /// What ``makeState()`` returns; tasks get it with ``PoolWorker/state(as:)``.
    associatedtype State

    /// Runs once in each worker process, before its first task.
    func makeState() async throws -> State
}

/// What a task running in a pool worker can know about its worker.
public enum PoolWorker {
    nonisolated(unsafe) static var currentIndex: Int?
    nonisolated(unsafe) static var currentState: Any?

    /// The worker's index in its pool (0 ..< workers), or `nil` outside a pool worker.
    /// A replacement worker takes the index of the worker it replaces.
    public static var index: Int? { currentIndex }

    /// The state the pool's ``WorkerInitializer`` made in this worker, or `nil`
    /// if there is none or it is not a `S`.
    public static func state<S>(as type: S.Type) -> S? { currentState as? S }
}
