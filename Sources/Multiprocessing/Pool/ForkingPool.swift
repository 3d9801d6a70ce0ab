#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import CMultiprocessing

/// A pool that runs a closure, in workers forked from a copy of this process
/// taken when the pool is created (mpire's shared objects, Python's pool with
/// the fork start method, done safely).
///
/// The closure may capture anything (a large table, a parsed model, a handle
/// of a C library): nothing is encoded, every worker starts with a
/// copy-on-write copy of the process as it was when the pool was made. The
/// copy (the *zygote*) never runs Swift code again; it only forks workers, so
/// a replacement for a crashed worker starts from the same state, however the
/// program changed since.
///
/// ```swift
/// let index = try loadIndex()                       // not Codable, 2 GiB
/// let pool = try ForkingPool(workers: 4) { (query: String) in index.search(query) }
/// for try await hits in pool.map(queries) { ... }
/// await pool.terminate()
/// ```
///
/// - Important: The zygote is made with `fork()`, so creating the pool throws
///   `.unsafeFork` when the process runs other threads (see
///   ``StartMethod/fork``); create it early, before starting threads (in an
///   async `main.swift`, before the first `await`), or pass
///   `allowingOtherThreads: true` to accept the risk. Other pools' threads
///   do not count: a program may make several ForkingPools.
public final class ForkingPool<Input: Codable & Sendable, Output: Codable & Sendable>: Sendable {
    private let pool: ProcessPool
    private let kind: Result<PoolWorkKind, any Error>

    /// How many workers the pool keeps running.
    public var workerCount: Int { pool.workerCount }

    /// Forks the zygote and starts the workers.
    ///
    /// - Parameters:
    ///   - workers: How many worker processes; by default ``availableCPUCount()``.
    ///   - options: Timeouts and recycling (the start method is always a fork of the zygote).
    ///   - allowingOtherThreads: Fork the zygote even though other threads run.
    ///   - body: The function; it runs in the workers.
    /// - Throws: `.unsafeFork` when other threads run; `.invalidArgument` for fewer than one worker.
    public init(
        workers: Int = availableCPUCount(), options: PoolOptions = PoolOptions(), allowingOtherThreads: Bool = false,
        _ body: @escaping @Sendable (Input) async throws -> Output
    ) throws {
        guard workers >= 1 else {
            throw MultiprocessingError(.invalidArgument, "a pool needs at least one worker, not \(workers)")
        }
        kind = Result {
            PoolWorkKind(typeName: try TaskName.resolvable(ClosureChunk.self), label: "the pool's closure")
        }
        let zygote = try Zygote.fork(allowingOtherThreads: allowingOtherThreads) {
            ClosureChunk.body = ClosureChunk.body(for: body)
        }
        // The zygote is a fork server: its workers report forkserver.
        var zygoteOptions = options
        zygoteOptions.startMethod = .forkserver
        do {
            pool = try ProcessPool(workers: workers, zygote: zygote, options: zygoteOptions) { zygote.stop() }
        } catch {
            zygote.stop()
            throw error
        }
    }

    /// Maps the closure over `inputs`, results in input order; see ``ProcessPool/map(_:_:chunkSize:)``.
    ///
    /// In synchronous code, ``PoolMap/get(timeout:)`` waits for every result
    /// (Python's `pool.map`).
    public func map<S: Sequence & Sendable>(_ inputs: S, chunkSize: Int? = nil) -> PoolMap<Output>
    where S.Element == Input {
        makeMap(inputs, chunkSize: chunkSize, ordered: true)
    }

    /// Maps the closure over `inputs`, results as they finish.
    public func mapUnordered<S: Sequence & Sendable>(_ inputs: S, chunkSize: Int? = nil) -> PoolMap<Output>
    where S.Element == Input {
        makeMap(inputs, chunkSize: chunkSize, ordered: false)
    }

    private func makeMap<S: Sequence & Sendable>(_ inputs: S, chunkSize: Int?, ordered: Bool) -> PoolMap<Output>
    where S.Element == Input {
        pool.client.makeMap(
            kind: kind, source: AnyInputSource.reading(inputs), knownCount: AnyInputSource.knownCount(of: inputs),
            chunkSize: chunkSize, ordered: ordered, decode: ChunkDecoding.values(Output.self))
    }

    /// Submits one input and returns at once (Python's `apply_async`).
    ///
    /// - Parameters:
    ///   - input: What the pool's closure is called with, in a worker.
    ///   - onCompletion: Called once with the result, on the pool's
    ///     thread, before the result is visible through the handle; keep it
    ///     short: a fork of this process waits for it.
    /// - Throws: `.closed` once the pool is closed.
    public func submit(
        _ input: Input, onCompletion: (@Sendable (Result<Output, any Error>) -> Void)? = nil
    ) throws -> PoolTask<Output> {
        try pool.client.submitOne(
            kind: kind.get(), encoded: EncodedChunk.encode([input]), decode: ChunkDecoding.values(Output.self),
            onCompletion: onCompletion)
    }

    /// Runs the closure on one input in a worker and returns its result (Python's `apply`).
    public func apply(_ input: Input) async throws -> Output {
        try await submit(input).value
    }

    /// Waits until every worker (and the zygote) has exited, blocking the calling thread.
    public func join() { pool.join() }

    /// Takes no more work; see ``ProcessPool/close(cancelPending:)``.
    public func close(cancelPending: Bool = false) { pool.close(cancelPending: cancelPending) }

    /// Waits until every worker (and the zygote) has exited.
    public func join() async { await pool.join() }

    /// Stops now; see ``ProcessPool/terminate()``.
    public func terminate() async { await pool.terminate() }

    /// Figures for each worker slot.
    public var statistics: [PoolWorkerStatistics] { pool.statistics }
}
