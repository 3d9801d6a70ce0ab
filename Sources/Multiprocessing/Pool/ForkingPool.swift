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
///   ``StartMethod/fork``); create it early, before starting threads, or pass
///   `allowingOtherThreads: true` to accept the risk.
public final class ForkingPool<Input: Codable & Sendable, Output: Codable & Sendable>: Sendable {
    private let pool: ProcessPool

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
        let zygote = try Zygote.fork(allowingOtherThreads: allowingOtherThreads) {
            ClosureChunk.body = { payload in await runClosureChunk(payload, body) }
        }
        var zygoteOptions = options
        zygoteOptions.startMethod = StartMethod(kind: .zygote(control: zygote.control), allowsOtherThreads: false)
        do {
            pool = try ProcessPool(workers: workers, zygoteOptions: zygoteOptions) { zygote.stop() }
        } catch {
            zygote.stop()
            throw error
        }
    }

    /// Maps the closure over `inputs`, results in input order; see ``ProcessPool/map(_:_:chunkSize:)``.
    public func map<S: Sequence & Sendable>(_ inputs: S, chunkSize: Int? = nil) -> PoolMap<Output>
    where S.Element == Input {
        pool.closureMap(
            source: AnyInputSource.reading(inputs), knownCount: ProcessPool.count(of: inputs), chunkSize: chunkSize,
            ordered: true, output: Output.self)
    }

    /// Maps the closure over `inputs`, results as they finish.
    public func mapUnordered<S: Sequence & Sendable>(_ inputs: S, chunkSize: Int? = nil) -> PoolMap<Output>
    where S.Element == Input {
        pool.closureMap(
            source: AnyInputSource.reading(inputs), knownCount: ProcessPool.count(of: inputs), chunkSize: chunkSize,
            ordered: false, output: Output.self)
    }

    /// Submits one input and returns at once (Python's `apply_async`).
    ///
    /// - Throws: `.closed` once the pool is closed.
    public func submit(_ input: Input) throws -> PoolTask<Output> {
        let handle = PoolTask<Output>(engine: pool.engine)
        let submission = PoolEngine.Submission(
            typeName: try TaskName.resolvable(ClosureChunk.self), payload: try WireEncoder().encode([input]), items: 1,
            work: "the pool's closure", firstItem: nil
        ) { outcome in
            handle.outcome.fulfill(decodeValuesOutcome(Output.self, outcome, count: 1)[0])
        }
        handle.job = try pool.engine.submit([submission])[0]
        return handle
    }

    /// Runs the closure on one input in a worker and returns its result (Python's `apply`).
    public func apply(_ input: Input) async throws -> Output {
        try await submit(input).value
    }

    /// Waits until every worker (and the zygote) has exited, blocking the calling thread.
    @available(*, noasync, message: "Use the async join in async code")
    public func join() { pool.join() }

    /// Takes no more work; see ``ProcessPool/close()``.
    public func close() { pool.close() }

    /// Waits until every worker (and the zygote) has exited.
    public func join() async { await pool.join() }

    /// Stops now; see ``ProcessPool/terminate()``.
    public func terminate() async { await pool.terminate() }

    /// Figures for each worker slot.
    public var statistics: [PoolWorkerStatistics] { pool.statistics }
}

/// The chunk kind of every ``ForkingPool``: its worker runs the closure the zygote was made with.
enum ClosureChunk: PoolWork {
    /// Set in the zygote before it serves, so every worker forked from it has it.
    nonisolated(unsafe) static var body: (@Sendable (ArraySlice<UInt8>) async -> (kind: UInt8, payload: [UInt8]))?

    static func runChunk(_ payload: ArraySlice<UInt8>) async -> (kind: UInt8, payload: [UInt8]) {
        guard let body else {
            return encodeOutcomes([
                .failure(
                    ErrorEnvelope(
                        MultiprocessingError(.unresolvableTask, "this worker was not forked from a pool's zygote"),
                        processName: ProcessIdentity.current.name))
            ])
        }
        return await body(payload)
    }
}

/// Runs a chunk of a ``ForkingPool``'s closure.
func runClosureChunk<Input: Decodable, Output: Encodable>(
    _ payload: ArraySlice<UInt8>, _ body: (Input) async throws -> Output
) async -> (kind: UInt8, payload: [UInt8]) {
    await runValueChunk(payload, callAll: { await _callEach($0, body) }, call: body)
}
