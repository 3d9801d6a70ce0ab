#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A pool of worker processes (Python's `multiprocessing.Pool` and
/// `concurrent.futures.ProcessPoolExecutor`).
///
/// ```swift
/// try await withProcessPool(workers: 3) { pool in
///     let handle = try pool.submit(Work(number: 1))      // apply_async
///     print(try await pool.apply(Work(number: 2)))       // apply
///     for try await square in pool.map(Square.self, 0..<10_000) { ... }   // imap
///     print(try await handle.value)
/// }
/// ```
///
/// What it does better than its Python anchors:
/// - a worker that dies (a signal, `abort()`, `exit()`) fails only the chunk
///   it was running, with an error naming the status and the work; it is
///   replaced and the pool goes on;
/// - ``PoolOptions/taskTimeout`` really stops the work: SIGTERM, a grace
///   period, SIGKILL, to the worker's whole process group;
/// - map reads its input lazily with a bounded number of chunks in flight, so
///   an endless input works and memory stays flat;
/// - cancelling the task that awaits a result or a map stops the work it
///   started;
/// - workers never outlive the program, even when it is killed with SIGKILL.
///
/// Use ``withProcessPool(workers:options:_:)`` where you can: it tears every
/// worker down and reaps it before it returns, also on an error and on
/// cancellation. Otherwise call ``close()`` and ``join()``, or ``terminate()``.
public final class ProcessPool: Sendable {
    let engine: PoolEngine

    /// How many workers the pool keeps running.
    public var workerCount: Int { engine.workerCount }

    /// Starts a pool.
    ///
    /// - Parameters:
    ///   - workers: How many worker processes; by default ``availableCPUCount()``.
    ///   - options: Start method, timeouts, recycling.
    /// - Throws: `.invalidArgument` for fewer than one worker or the fork
    ///   start method; what starting a process throws.
    public init(workers: Int = availableCPUCount(), options: PoolOptions = PoolOptions()) throws {
        try Self.check(workers: workers, options: options)
        engine = try PoolEngine(workers: workers, options: options, initializerType: nil, initializer: nil)
    }

    /// A pool whose workers come from a zygote (see ``ForkingPool``).
    init(workers: Int, zygoteOptions options: PoolOptions, onEnd: @escaping @Sendable () -> Void) throws {
        engine = try PoolEngine(
            workers: workers, options: options, initializerType: nil, initializer: nil, onEnd: onEnd)
    }

    /// Starts a pool whose workers each run `initializer` once before their first task.
    ///
    /// - Parameter initializer: Makes each worker's state, which tasks get
    ///   with ``PoolWorker/state(as:)``. If it throws, the pool is broken:
    ///   calls fail with `.initializerFailed` carrying its error.
    public init<I: WorkerInitializer>(
        workers: Int = availableCPUCount(), options: PoolOptions = PoolOptions(), initializer: I
    ) throws {
        try Self.check(workers: workers, options: options)
        let name = try TaskName.resolvable(InitializerRunner<I>.self)
        engine = try PoolEngine(
            workers: workers, options: options, initializerType: name,
            initializer: try WireEncoder().encode(initializer))
    }

    private static func check(workers: Int, options: PoolOptions) throws {
        guard workers >= 1 else {
            throw MultiprocessingError(.invalidArgument, "a pool needs at least one worker, not \(workers)")
        }
        guard options.startMethod.kind != .fork else {
            throw MultiprocessingError(
                .invalidArgument,
                "a pool of task values starts its workers with forkserver or spawn; "
                    + "for a closure forked with the pool's state, use ForkingPool")
        }
        if let timeout = options.taskTimeout, timeout <= .zero {
            throw MultiprocessingError(.invalidArgument, "a task timeout must be positive, not \(timeout)")
        }
    }

    deinit {
        engine.terminate()
    }

    // MARK: One task

    /// Submits one task and returns at once (Python's `apply_async`).
    ///
    /// - Parameters:
    ///   - task: The work.
    ///   - onCompletion: Called once with the result, on the pool's thread;
    ///     keep it short.
    /// - Returns: A handle to await, wait for, or cancel.
    /// - Throws: `.unresolvableTask` for a type a worker cannot find;
    ///   `.encodingFailed`; `.closed` once the pool is closed;
    ///   `.initializerFailed` when the pool is broken.
    public func submit<T: ProcessTask>(
        _ task: T, onCompletion: (@Sendable (Result<T.Output, any Error>) -> Void)? = nil
    ) throws -> PoolTask<T.Output> {
        let typeName = try TaskName.resolvable(TaskChunk<T>.self)
        let payload = try WireEncoder().encode([task])
        let handle = PoolTask<T.Output>(engine: engine)
        let submission = PoolEngine.Submission(
            typeName: typeName, payload: payload, items: 1, work: "task \(String(reflecting: T.self))", firstItem: nil
        ) {
            outcome in
            let result = decodeOutcomes(outcome, count: 1) { try T._decodeOutput($0) }[0]
            handle.outcome.fulfill(result)
            onCompletion?(result)
        }
        handle.job = try engine.submit([submission])[0]
        return handle
    }

    /// Runs one task in a worker and returns its result (Python's `apply`).
    ///
    /// Cancelling the calling task stops the work: the worker running it is
    /// killed and replaced.
    public func apply<T: ProcessTask>(_ task: T) async throws -> T.Output {
        let handle = try submit(task)
        return try await handle.value
    }

    // MARK: Many inputs

    /// Maps a function over `inputs`, results in input order (Python's `imap`).
    ///
    /// Inputs are read lazily, a chunk at a time, with a bounded number of
    /// chunks in flight: an endless sequence works, and memory stays flat.
    /// A failed item throws at its place in the results; a failed item does
    /// not stop the others (iterate ``PoolMap/results`` to see each one).
    /// ``PoolMap/collect()`` gathers everything (Python's `map`).
    ///
    /// - Parameters:
    ///   - function: The function's type.
    ///   - inputs: Any sequence of inputs.
    ///   - chunkSize: Items per message. By default: for a collection,
    ///     Python's `count / (4 × workers)`, at most 16,384; for other
    ///     sequences, it starts at 1 and grows while items are fast, until a
    ///     chunk takes about 5 ms.
    @inlinable
    public func map<F: ProcessFunction, S: Sequence & Sendable>(
        _ function: F.Type, _ inputs: S, chunkSize: Int? = nil
    ) -> PoolMap<F.Output> where S.Element == F.Input {
        functionMap(
            F.self, source: AnyInputSource.reading(inputs), knownCount: Self.count(of: inputs), chunkSize: chunkSize,
            ordered: true)
    }

    /// Like ``map(_:_:chunkSize:)``, with results in the order they finish (Python's `imap_unordered`).
    @inlinable
    public func mapUnordered<F: ProcessFunction, S: Sequence & Sendable>(
        _ function: F.Type, _ inputs: S, chunkSize: Int? = nil
    ) -> PoolMap<F.Output> where S.Element == F.Input {
        functionMap(
            F.self, source: AnyInputSource.reading(inputs), knownCount: Self.count(of: inputs), chunkSize: chunkSize,
            ordered: false)
    }

    /// Maps a function over an asynchronous sequence of inputs.
    @inlinable
    public func map<F: ProcessFunction, S: AsyncSequence & Sendable>(
        _ function: F.Type, _ inputs: S, chunkSize: Int? = nil, ordered: Bool = true
    ) -> PoolMap<F.Output> where S.Element == F.Input {
        functionMap(
            F.self, source: AnyInputSource.reading(async: inputs), knownCount: nil, chunkSize: chunkSize,
            ordered: ordered)
    }

    /// Runs many task values, results in order (a `map` whose items are tasks).
    @inlinable
    public func map<T: ProcessTask, S: Sequence & Sendable>(
        tasks: S, chunkSize: Int? = nil, ordered: Bool = true
    ) -> PoolMap<T.Output> where S.Element == T {
        taskMap(
            T.self, source: AnyInputSource.reading(tasks), knownCount: Self.count(of: tasks), chunkSize: chunkSize,
            ordered: ordered)
    }

    @inlinable
    static func count<S: Sequence>(of inputs: S) -> Int? {
        inputs is any Collection ? inputs.underestimatedCount : nil
    }

    @usableFromInline
    func functionMap<F: ProcessFunction>(
        _ function: F.Type, source: @escaping @Sendable () -> AnyInputSource, knownCount: Int?, chunkSize: Int?,
        ordered: Bool
    ) -> PoolMap<F.Output> {
        PoolMap(
            pool: self, typeName: Result { try TaskName.resolvable(FunctionChunk<F>.self) },
            label: String(reflecting: F.self), chunkSize: chunkSize, knownCount: knownCount, ordered: ordered,
            source: source, decode: { outcome, count in decodeFunctionOutcome(F.self, outcome, count: count) })
    }

    func closureMap<Output: Codable & Sendable>(
        source: @escaping @Sendable () -> AnyInputSource, knownCount: Int?, chunkSize: Int?, ordered: Bool,
        output: Output.Type
    ) -> PoolMap<Output> {
        PoolMap(
            pool: self, typeName: Result { try TaskName.resolvable(ClosureChunk.self) }, label: "the pool's closure",
            chunkSize: chunkSize, knownCount: knownCount, ordered: ordered, source: source,
            decode: { outcome, count in decodeValuesOutcome(Output.self, outcome, count: count) })
    }

    @usableFromInline
    func taskMap<T: ProcessTask>(
        _ task: T.Type, source: @escaping @Sendable () -> AnyInputSource, knownCount: Int?, chunkSize: Int?,
        ordered: Bool
    ) -> PoolMap<T.Output> {
        PoolMap(
            pool: self, typeName: Result { try TaskName.resolvable(TaskChunk<T>.self) },
            label: String(reflecting: T.self), chunkSize: chunkSize, knownCount: knownCount, ordered: ordered,
            source: source,
            decode: { outcome, count in .results(decodeOutcomes(outcome, count: count) { try T._decodeOutput($0) }) })
    }

    // MARK: Lifetime

    /// Takes no more work; the workers exit once the work already submitted
    /// is done (Python's `close()`).
    public func close() {
        engine.close()
    }

    /// Waits until every worker has exited and been reaped (Python's
    /// `join()`); call ``close()`` first, or it waits until ``terminate()``.
    public func join() async {
        _ = try? await BlockingThreads.run { self.engine.waitUntilEnded() }
    }

    /// Waits until every worker has exited and been reaped, blocking the calling thread.
    @available(*, noasync, message: "Use the async join in async code")
    public func join() {
        engine.waitUntilEnded()
    }

    /// Stops now: work not finished fails with `.closed`, every worker is
    /// killed and reaped before this returns (Python's `terminate()`).
    public func terminate() async {
        engine.terminate()
        await join()
    }

    /// Figures for each worker slot: items done, time busy, restarts.
    public var statistics: [PoolWorkerStatistics] { engine.workerStatistics }
}

/// Runs `body` with a pool, and tears every worker down and reaps it before
/// returning, also when `body` throws or the task is cancelled.
///
/// - Parameters:
///   - workers: How many worker processes; by default ``availableCPUCount()``.
///   - options: Start method, timeouts, recycling.
///   - body: Uses the pool.
/// - Returns: What `body` returns.
public func withProcessPool<R>(
    workers: Int = availableCPUCount(), options: PoolOptions = PoolOptions(),
    _ body: (ProcessPool) async throws -> R
) async throws -> R {
    let pool = try ProcessPool(workers: workers, options: options)
    do {
        let result = try await body(pool)
        await pool.terminate()
        return result
    } catch {
        await pool.terminate()
        throw error
    }
}

/// A task submitted to a pool (Python's `AsyncResult`, a `Future`).
public final class PoolTask<Output: Sendable>: Sendable {
    let outcome = OneShot<Result<Output, any Error>>()
    private let engine: PoolEngine
    private let jobBox = LockedBox<ChunkJob?>(nil)

    var job: ChunkJob? {
        get { jobBox.value }
        set { jobBox.value = newValue }
    }

    init(engine: PoolEngine) {
        self.engine = engine
    }

    /// The result, once the task has run. Cancelling the awaiting task
    /// cancels this one (its worker is killed and replaced) and throws
    /// `CancellationError`.
    public var value: Output {
        get async throws {
            try await withTaskCancellationHandler {
                try await outcome.wait().get()
            } onCancel: {
                self.cancel()
            }
        }
    }

    /// Waits for the result, blocking the calling thread (Python's `get(timeout)`).
    ///
    /// - Throws: `.timedOut` when `timeout` passes first (the task goes on);
    ///   the task's own error otherwise.
    @available(*, noasync, message: "Use value in async code")
    public func get(timeout: Duration? = nil) throws -> Output {
        guard let result = outcome.wait(until: timeout.map { .now + $0 }) else {
            throw MultiprocessingError(.timedOut, "the task did not finish within \(timeout!)")
        }
        return try result.get()
    }

    /// Whether the task has finished (or failed, or was cancelled).
    public var isDone: Bool { outcome.current != nil }

    /// Cancels the task: dropped if it has not started; if it runs, its worker
    /// is killed and replaced. Its result becomes `CancellationError`.
    public func cancel() {
        guard let job else { return }
        engine.cancel(job, kill: true)
    }
}

/// A mutable value shared between threads.
final class LockedBox<Value: Sendable>: @unchecked Sendable {
    // @unchecked: `stored` is only touched inside `lock`.
    private let lock = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private var stored: Value

    init(_ value: Value) {
        stored = value
        pthread_mutex_init(lock, nil)
    }

    deinit {
        pthread_mutex_destroy(lock)
        lock.deallocate()
    }

    var value: Value {
        get {
            pthread_mutex_lock(lock)
            defer { pthread_mutex_unlock(lock) }
            return stored
        }
        set {
            pthread_mutex_lock(lock)
            stored = newValue
            pthread_mutex_unlock(lock)
        }
    }
}

/// The per-item results of a chunk of function inputs.
func decodeFunctionOutcome<F: ProcessFunction>(
    _ function: F.Type, _ outcome: ChunkOutcome, count: Int
) -> ChunkResults<F.Output> {
    decodeValuesOutcome(F.Output.self, outcome, count: count)
}

/// The per-item results of a chunk whose worker sends all values at once when every item succeeded.
func decodeValuesOutcome<Output: Decodable & Sendable>(
    _ output: Output.Type, _ outcome: ChunkOutcome, count: Int
) -> ChunkResults<Output> {
    if case .result(let kind, let payload, _) = outcome, kind == ChunkResultKind.values {
        do {
            let values = try payload.withUnsafeBytes { try WireDecoder().decode([Output].self, from: $0) }
            if values.count == count { return .values(values) }
        } catch {
            return .results(Array(repeating: .failure(error), count: count))
        }
    }
    return .results(decodeOutcomes(outcome, count: count) { try WireDecoder().decode(Output.self, from: $0) })
}

/// The per-item results of a chunk whose worker sent one outcome per item.
func decodeOutcomes<Output>(
    _ outcome: ChunkOutcome, count: Int, decode: ([UInt8]) throws -> Output
) -> [Result<Output, any Error>] {
    switch outcome {
    case .failed(let error):
        return Array(repeating: .failure(error), count: count)
    case .result(_, let payload, _):
        guard let outcomes = try? payload.withUnsafeBytes({ try WireDecoder().decode([Outcome].self, from: $0) }) else {
            let error = MultiprocessingError(.decodingFailed, "a worker's result could not be decoded")
            return Array(repeating: .failure(error), count: count)
        }
        if outcomes.count == 1 && count > 1, case .failure(let envelope) = outcomes[0] {
            return Array(repeating: .failure(envelope.error), count: count)
        }
        return (0..<count).map { index in
            guard index < outcomes.count else {
                return .failure(MultiprocessingError(.decodingFailed, "a worker sent too few results"))
            }
            switch outcomes[index] {
            case .success(let bytes): return Result { try decode(bytes) }
            case .failure(let envelope): return .failure(envelope.error)
            }
        }
    }
}
