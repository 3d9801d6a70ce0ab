import Dispatch
import Synchronization
import Foundation
import Logging
@_spi(PoolBackend) import Multiprocessing
import NIOCore
import PostgresNIO

/// A pool whose workers are the nodes of a cluster: the same API as a
/// ``Multiprocessing/ProcessPool``, with the chunks running on whichever
/// machines run ``ClusterNode`` against the same database.
///
/// ```swift
/// let database = try ClusterDatabase(url: "postgres://mp:secret@db:5432/mp")
/// try await withClusterPool(database: database) { pool in
///     for try await square in pool.map(Square.self, 0..<1_000_000) { ... }
///     print(try await pool.apply(Work(number: 2)))
/// }
/// ```
///
/// Semantics:
/// - execution is at least once: a chunk whose node died or was cut off runs
///   again on another node, so side effects outside the result may happen twice;
/// - delivery is exactly once: each item's result reaches the caller once, in
///   order for ``map(_:_:chunkSize:)``; a re-run's second result is dropped;
/// - a chunk whose nodes die under it three times fails with `.nodeDied`;
///   a chunk whose worker dies fails (only the item that was running) with
///   `.workerDied`, as locally;
/// - per-item timeouts are the nodes' (``ClusterNode/run(database:workers:options:drainTimeout:logger:)``'s
///   `options.taskTimeout`): the node's pool kills the worker;
/// - the pool survives a database restart (its statements are retried on a
///   new connection); if the pool's process dies, the nodes drop its chunks
///   within seconds.
///
/// Inputs and results travel through the database: keep them small, and
/// put no shared memory, queues or locks inside them (they cannot cross
/// machines; a map of such inputs fails with `.invalidArgument`).
public final class ClusterPool: Sendable {
    let broker: DriverBroker
    let client: PoolClient

    /// The workers of the nodes alive at the last heartbeat (at least 1):
    /// maps size their windows of chunks in flight by it.
    public var workerCount: Int { broker.workerCount }

    /// The pool's id in the cluster's `pool` table.
    public var id: Int64 { broker.poolID }

    /// Connects to the cluster's database, creating its schema when it is missing.
    ///
    /// - Parameters:
    ///   - database: The cluster's database.
    ///   - logger: Where the pool says what it does (reconnections); silent by default.
    /// - Throws: `.databaseUnavailable` when the database cannot be reached,
    ///   `.databaseRefused` for a wrong user, password or database name,
    ///   `.schemaMismatch` for a missing schema that may not be created or one
    ///   of another version.
    public init(database: ClusterDatabase, logger: Logger? = nil) async throws {
        broker = try await DriverBroker.start(
            database: database, logger: logger ?? Logger(label: "multiprocessing.cluster", factory: { _ in SwiftLogNoOpLogHandler() }))
        client = PoolClient(backend: broker)
    }

    deinit {
        broker.close(cancelPending: false)
    }

    // MARK: Work

    /// Submits one task and returns at once (Python's `apply_async`).
    ///
    /// - Parameters:
    ///   - task: The work; it must be `Codable` without shared objects.
    ///   - onCompletion: Called once with the result, before the handle sees it; keep it short.
    /// - Returns: A handle to await or cancel. Cancelling it stops the worker running the task.
    /// - Throws: `.unresolvableTask` for a type a node cannot find by name, `.encodingFailed`,
    ///   `.closed` once the pool is closed.
    public func submit<T: ProcessTask>(
        _ task: T, onCompletion: (@Sendable (Result<T.Output, any Error>) -> Void)? = nil
    ) throws -> PoolTask<T.Output> {
        try client.submit(task, onCompletion: onCompletion)
    }

    /// Runs one task on a node and returns its result (Python's `apply`).
    ///
    /// Cancelling the calling task stops the work on its node.
    public func apply<T: ProcessTask>(_ task: T) async throws -> T.Output {
        try await submit(task).value
    }

    /// Maps a function over `inputs` on the cluster's nodes, results in input order (Python's `imap`).
    ///
    /// Inputs are read lazily with a bounded window of chunks in the
    /// database. The chunk size grows while items are fast, as in
    /// ``Multiprocessing/ProcessPool/map(_:_:chunkSize:)``; give `chunkSize`
    /// to fix it (larger chunks mean fewer rows and commits).
    public func map<F: ProcessFunction, S: Sequence & Sendable>(
        _ function: F.Type, _ inputs: S, chunkSize: Int? = nil
    ) -> PoolMap<F.Output> where S.Element == F.Input {
        client.map(F.self, inputs, chunkSize: chunkSize, ordered: true)
    }

    /// Like ``map(_:_:chunkSize:)``, with results in the order they finish (Python's `imap_unordered`).
    public func mapUnordered<F: ProcessFunction, S: Sequence & Sendable>(
        _ function: F.Type, _ inputs: S, chunkSize: Int? = nil
    ) -> PoolMap<F.Output> where S.Element == F.Input {
        client.map(F.self, inputs, chunkSize: chunkSize, ordered: false)
    }

    /// Maps a function over an asynchronous sequence of inputs.
    public func map<F: ProcessFunction, S: AsyncSequence & Sendable>(
        _ function: F.Type, _ inputs: S, chunkSize: Int? = nil, ordered: Bool = true
    ) -> PoolMap<F.Output> where S.Element == F.Input {
        client.map(F.self, inputs, chunkSize: chunkSize, ordered: ordered)
    }

    /// Runs many task values on the nodes, results in order (a `map` whose items are tasks).
    public func map<T: ProcessTask, S: Sequence & Sendable>(
        tasks: S, chunkSize: Int? = nil, ordered: Bool = true
    ) -> PoolMap<T.Output> where S.Element == T {
        client.map(tasks: tasks, chunkSize: chunkSize, ordered: ordered)
    }

    // MARK: Lifetime

    /// Takes no more work; the pool ends once the work already submitted is done.
    ///
    /// - Parameter cancelPending: `true` to cancel the chunks no node has
    ///   claimed yet (they fail with `CancellationError`) and let only the
    ///   running ones finish.
    public func close(cancelPending: Bool = false) {
        broker.close(cancelPending: cancelPending)
    }

    /// Waits until the pool has ended: closed with nothing left, or terminated.
    /// Its rows are then gone from the database.
    public func join() async {
        await broker.ended.wait()
    }

    /// Stops now: unfinished work fails with `.closed`, and the pool's chunks
    /// are deleted from the database, so the nodes drop them.
    public func terminate() async {
        broker.terminate()
        await join()
    }
}

/// Runs `body` with a cluster pool, and terminates the pool (its unfinished
/// chunks deleted from the database) before returning, also when `body`
/// throws or the task is cancelled.
///
/// - Parameters:
///   - database: The cluster's database.
///   - logger: Where the pool says what it does; silent by default.
///   - body: Uses the pool.
/// - Returns: What `body` returns.
/// - Throws: What ``ClusterPool/init(database:logger:)`` throws, or what `body` throws.
public func withClusterPool<R>(
    database: ClusterDatabase, logger: Logger? = nil, _ body: (ClusterPool) async throws -> R
) async throws -> R {
    let pool = try await ClusterPool(database: database, logger: logger)
    do {
        let result = try await body(pool)
        await pool.terminate()
        return result
    } catch {
        await pool.terminate()
        throw error
    }
}

/// A one-time event many can wait for, blocking or not.
final class Ended: Sendable {
    private let state = Mutex<(done: Bool, waiters: [CheckedContinuation<Void, Never>])>((false, []))
    private let semaphore = DispatchSemaphore(value: 0)

    func fire() {
        let waiters = state.withLock { state -> [CheckedContinuation<Void, Never>]? in
            guard !state.done else { return nil }
            state.done = true
            defer { state.waiters = [] }
            return state.waiters
        }
        guard let waiters else { return }
        semaphore.signal()
        for waiter in waiters { waiter.resume() }
    }

    var isDone: Bool { state.withLock { $0.done } }

    func wait() async {
        await withCheckedContinuation { continuation in
            let done = state.withLock { state -> Bool in
                if !state.done { state.waiters.append(continuation) }
                return state.done
            }
            if done { continuation.resume() }
        }
    }

    func waitBlocking() {
        semaphore.wait()
        semaphore.signal()
    }
}
