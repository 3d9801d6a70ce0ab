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
/// - a worker that dies (a signal, `abort()`, `exit()`) fails only the item
///   it was running, with an error naming the status and the item; the
///   other items of its chunk run again elsewhere, the worker is replaced
///   and the pool goes on (CPython's pool breaks with `BrokenProcessPool`);
/// - ``PoolOptions/taskTimeout`` limits each item and really stops it:
///   SIGTERM, a grace period, SIGKILL, to the worker's whole process group;
/// - map reads its input lazily with a bounded number of chunks in flight, so
///   an endless input works and memory stays flat;
/// - cancelling the task that awaits a result or a map stops the work it
///   started;
/// - workers never outlive the program, even when it is killed with SIGKILL.
///
/// Use ``withProcessPool(workers:options:_:)`` where you can: it tears every
/// worker down and reaps it before it returns, also on an error and on
/// cancellation. Otherwise call ``close(cancelPending:)`` and ``join()-53dh6``, or
/// ``terminate()``. A pool that is dropped, or still open when the program
/// exits, finishes the work it was given first (as `concurrent.futures`
/// does); work submitted while the program exits is refused with `.closed`.
public final class ProcessPool: Sendable {
    let engine: PoolEngine
    let client: PoolClient

    /// How many workers the pool keeps running.
    public var workerCount: Int { engine.workerCount }

    /// The pool's workers as a backend, for a layer that hands them chunks
    /// it got elsewhere (a cluster node).
    @_spi(PoolBackend)
    public var backend: any PoolBackend { engine }

    /// Starts a pool.
    ///
    /// - Parameters:
    ///   - workers: How many worker processes; by default ``availableCPUCount()``.
    ///   - options: Start method, timeouts, recycling.
    /// - Throws: `.invalidArgument` for fewer than one worker, the fork
    ///   start method, or options out of range; what starting a process throws.
    public init(workers: Int = availableCPUCount(), options: PoolOptions = PoolOptions()) throws {
        try Self.check(workers: workers, options: options)
        engine = try PoolEngine(workers: workers, options: options, initializer: nil)
        client = PoolClient(backend: engine)
    }

    /// Starts a pool whose workers each run `initializer` once before their first task.
    ///
    /// The initializer travels to each worker like a task value: shared
    /// values, queues, locks and shared memory inside it reach every worker
    /// (Python's `Pool(initializer=init, initargs=(counter, queue))`).
    ///
    /// - Parameters:
    ///   - workers: How many worker processes; by default ``availableCPUCount()``.
    ///   - options: Start method, timeouts, recycling.
    ///   - initializer: Makes each worker's state, which tasks get
    ///     with ``PoolWorker/state(as:)``. If it throws, the pool is broken:
    ///     calls fail with `.initializerFailed` carrying its error.
    public init<I: WorkerInitializer>(
        workers: Int = availableCPUCount(), options: PoolOptions = PoolOptions(), initializer: I
    ) throws {
        try Self.check(workers: workers, options: options)
        engine = try PoolEngine(workers: workers, options: options, initializer: PoolInitializer(initializer))
        client = PoolClient(backend: engine)
    }

    /// A pool whose workers come from a zygote (see ``ForkingPool``).
    init(workers: Int, zygote: Zygote, options: PoolOptions, onEnd: @escaping @Sendable () -> Void) throws {
        try Self.check(options: options)
        engine = try PoolEngine(
            workers: workers, options: options, initializer: nil, forkServer: zygote, onEnd: onEnd)
        client = PoolClient(backend: engine)
    }

    static func check(workers: Int, options: PoolOptions) throws {
        guard workers >= 1 else {
            throw MultiprocessingError(.invalidArgument, "a pool needs at least one worker, not \(workers)")
        }
        guard options.startMethod.kind != .fork else {
            throw MultiprocessingError(
                .invalidArgument,
                "a pool of task values starts its workers with forkserver or spawn; "
                    + "for a closure forked with the pool's state, use ForkingPool")
        }
        try check(options: options)
    }

    private static func check(options: PoolOptions) throws {
        if let timeout = options.taskTimeout, timeout <= .zero {
            throw MultiprocessingError(.invalidArgument, "a task timeout must be positive, not \(timeout)")
        }
        if options.gracePeriod < .zero {
            throw MultiprocessingError(.invalidArgument, "a grace period cannot be negative: \(options.gracePeriod)")
        }
        if let limit = options.maxTasksPerWorker, limit < 1 {
            throw MultiprocessingError(.invalidArgument, "maxTasksPerWorker must be at least 1, not \(limit)")
        }
        if let limit = options.maxWorkerMemory, limit < 1 {
            throw MultiprocessingError(.invalidArgument, "maxWorkerMemory must be at least 1 byte, not \(limit)")
        }
    }

    deinit {
        engine.close(cancelPending: false)
    }

    // MARK: One task

    /// Submits one task and returns at once (Python's `apply_async`).
    ///
    /// - Parameters:
    ///   - task: The work. Shared values, queues, locks, shared memory and
    ///     connections inside it travel with it.
    ///   - onCompletion: Called once with the result, on the pool's thread,
    ///     before the result is visible through the handle; keep it short:
    ///     a fork of this process waits for it, and it must not block on
    ///     another pool's result.
    /// - Returns: A handle to await, wait for, or cancel.
    /// - Throws: `.unresolvableTask` for a type a worker cannot find;
    ///   `.encodingFailed`; `.closed` once the pool is closed or the program
    ///   exits; `.initializerFailed` when the pool is broken.
    public func submit<T: ProcessTask>(
        _ task: T, onCompletion: (@Sendable (Result<T.Output, any Error>) -> Void)? = nil
    ) throws -> PoolTask<T.Output> {
        try client.submit(task, onCompletion: onCompletion)
    }

    /// Runs one task in a worker and returns its result (Python's `apply`).
    ///
    /// Cancelling the calling task stops the work: the worker running it is
    /// killed and replaced.
    public func apply<T: ProcessTask>(_ task: T) async throws -> T.Output {
        try await submit(task).value
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
    ///   - chunkSize: Items per message, at least 1. By default it starts at
    ///     1 and grows while items are fast, until a chunk takes about 5 ms
    ///     (for a collection, up to Python's `count / (4 × workers)`, at most
    ///     16,384), so slow items travel alone and fast ones in bulk.
    @inlinable
    public func map<F: ProcessFunction, S: Sequence & Sendable>(
        _ function: F.Type, _ inputs: S, chunkSize: Int? = nil
    ) -> PoolMap<F.Output> where S.Element == F.Input {
        functionMap(
            F.self, source: AnyInputSource.reading(inputs), knownCount: AnyInputSource.knownCount(of: inputs),
            chunkSize: chunkSize, ordered: true)
    }

    /// Like ``map(_:_:chunkSize:)``, with results in the order they finish (Python's `imap_unordered`).
    @inlinable
    public func mapUnordered<F: ProcessFunction, S: Sequence & Sendable>(
        _ function: F.Type, _ inputs: S, chunkSize: Int? = nil
    ) -> PoolMap<F.Output> where S.Element == F.Input {
        functionMap(
            F.self, source: AnyInputSource.reading(inputs), knownCount: AnyInputSource.knownCount(of: inputs),
            chunkSize: chunkSize, ordered: false)
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
            T.self, source: AnyInputSource.reading(tasks), knownCount: AnyInputSource.knownCount(of: tasks),
            chunkSize: chunkSize, ordered: ordered)
    }

    @usableFromInline
    func functionMap<F: ProcessFunction>(
        _ function: F.Type, source: @escaping @Sendable () -> AnyInputSource, knownCount: Int?, chunkSize: Int?,
        ordered: Bool
    ) -> PoolMap<F.Output> {
        client.functionMap(F.self, source: source, knownCount: knownCount, chunkSize: chunkSize, ordered: ordered)
    }

    @usableFromInline
    func taskMap<T: ProcessTask>(
        _ task: T.Type, source: @escaping @Sendable () -> AnyInputSource, knownCount: Int?, chunkSize: Int?,
        ordered: Bool
    ) -> PoolMap<T.Output> {
        client.taskMap(T.self, source: source, knownCount: knownCount, chunkSize: chunkSize, ordered: ordered)
    }

    // MARK: Lifetime

    /// Takes no more work; the workers exit once the work already submitted
    /// is done (Python's `close()`).
    ///
    /// - Parameter cancelPending: `true` to cancel the work that has not
    ///   started instead (it fails with `CancellationError`) and let only the
    ///   running work finish: with ``join()-53dh6`` afterwards, Python's
    ///   `shutdown(cancel_futures=True)`.
    public func close(cancelPending: Bool = false) {
        engine.close(cancelPending: cancelPending)
    }

    /// Waits until every worker has exited and been reaped (Python's
    /// `join()`); call ``close(cancelPending:)`` first, or it waits until ``terminate()``.
    public func join() async {
        _ = try? await BlockingThreads.run { self.engine.waitUntilEnded() }
    }

    /// Waits until every worker has exited and been reaped, blocking the calling thread.
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
