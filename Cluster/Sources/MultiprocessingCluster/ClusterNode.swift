import Dispatch
import Foundation
import Logging
@_spi(PoolBackend) import Multiprocessing
import NIOCore
import PostgresNIO
import Synchronization

/// A machine's share of a cluster: a local ``Multiprocessing/ProcessPool``
/// that takes chunks from the cluster's database, runs them, and writes
/// their results back.
///
/// Run the node from the same binary as the driver (or one that has the same
/// task and function types): workers find the work by its type's name.
///
/// ```swift
/// @main struct App {
///     static func main() async throws {
///         if try await ClusterNode.runFromCommandLine() { return }   // `app --cluster-node URL`
///         ...                                                        // the driver
///     }
/// }
/// ```
///
/// What the node guarantees:
/// - it holds a lease (a session advisory lock and a heartbeat every 250 ms):
///   if its process dies, other nodes run its chunks again within about a
///   second; if its network goes silent, within about five;
/// - on SIGTERM (or when the calling task is cancelled) it drains: it claims
///   nothing more, lets its running chunks finish for up to `drainTimeout`,
///   hands the rest back for other nodes, and returns;
/// - every node reaps: it hands back the chunks of dead nodes (a chunk whose
///   nodes died under it three times fails as poison with `.nodeDied`) and
///   drops the chunks of pools whose process died.
public enum ClusterNode {
    /// How many node deaths a chunk survives before it fails as poison.
    public static let maximumDeaths = 3

    /// Runs a node until SIGTERM, or until the calling task is cancelled.
    ///
    /// - Parameters:
    ///   - database: The cluster's database.
    ///   - workers: Local worker processes; by default ``Multiprocessing/availableCPUCount()``.
    ///   - options: The local pool's options: `taskTimeout` limits each item
    ///     on this node (the item fails with `.timedOut`), and the rest as for
    ///     a ``Multiprocessing/ProcessPool``.
    ///   - drainTimeout: How long running chunks may finish after SIGTERM
    ///     before they are handed back.
    ///   - logger: Where the node says what it does; silent by default.
    /// - Throws: `.databaseUnavailable`, `.databaseRefused`, `.schemaMismatch`
    ///   at start (see ``ClusterPool/init(database:logger:)``); what starting
    ///   a ``Multiprocessing/ProcessPool`` throws.
    public static func run(
        database: ClusterDatabase, workers: Int = availableCPUCount(), options: PoolOptions = PoolOptions(),
        drainTimeout: Duration = .seconds(30), logger: Logger? = nil
    ) async throws {
        let logger = logger ?? Logger(label: "multiprocessing.cluster.node", factory: { _ in SwiftLogNoOpLogHandler() })
        let agent = try await NodeAgent.start(
            database: database, workers: workers, options: options, drainTimeout: drainTimeout, logger: logger)
        signal(SIGTERM, SIG_IGN)
        let source = DispatchSource.makeSignalSource(signal: SIGTERM)
        source.setEventHandler { agent.drain() }
        source.resume()
        defer { source.cancel() }
        await withTaskCancellationHandler {
            await agent.run()
        } onCancel: {
            agent.drain()
        }
    }

    /// Runs a node when the program was started as one, and returns whether it did.
    ///
    /// A program is started as a node with `--cluster-node URL` on its
    /// command line, or `MULTIPROCESSING_CLUSTER_NODE=URL` in its environment:
    ///
    /// ```sh
    /// ./app --cluster-node postgres://mp:secret@db:5432/mp --cluster-workers 8
    /// MULTIPROCESSING_CLUSTER_NODE=postgres://mp:secret@db:5432/mp ./app
    /// ```
    ///
    /// `--cluster-workers N` (or `MULTIPROCESSING_CLUSTER_WORKERS`) sets the
    /// local workers, `--cluster-task-timeout SECONDS` each item's time limit.
    /// The node runs until SIGTERM, then drains and returns `true`.
    ///
    /// - Parameter arguments: The command line; by default the program's.
    /// - Returns: `false` when the program was not started as a node.
    /// - Throws: `.invalidArgument` for a bad URL or number; what ``run(database:workers:options:drainTimeout:logger:)`` throws.
    public static func runFromCommandLine(
        _ arguments: [String] = CommandLine.arguments, logger: Logger? = nil
    ) async throws -> Bool {
        let environment = ProcessInfo.processInfo.environment
        func value(_ flag: String, _ variable: String) throws -> String? {
            if let index = arguments.firstIndex(of: flag) {
                guard index + 1 < arguments.count else {
                    throw MultiprocessingError(.invalidArgument, "\(flag) needs a value")
                }
                return arguments[index + 1]
            }
            return environment[variable]
        }
        guard let url = try value("--cluster-node", "MULTIPROCESSING_CLUSTER_NODE") else { return false }
        let database = try ClusterDatabase(url: url)
        var workers = availableCPUCount()
        if let text = try value("--cluster-workers", "MULTIPROCESSING_CLUSTER_WORKERS") {
            guard let count = Int(text), count >= 1 else {
                throw MultiprocessingError(.invalidArgument, "--cluster-workers takes a number at least 1, not \(text)")
            }
            workers = count
        }
        var options = PoolOptions()
        if let text = try value("--cluster-task-timeout", "MULTIPROCESSING_CLUSTER_TASK_TIMEOUT") {
            guard let seconds = Double(text), seconds > 0 else {
                throw MultiprocessingError(
                    .invalidArgument, "--cluster-task-timeout takes a positive number of seconds, not \(text)")
            }
            options.taskTimeout = .milliseconds(Int64(seconds * 1000))
        }
        try await run(database: database, workers: workers, options: options, logger: logger)
        return true
    }
}

/// A node's machinery: four loops over two connections.
///
/// - claim: takes up to idle workers + 1 waiting chunks (`FOR UPDATE SKIP
///   LOCKED`), hands them to the local pool; woken by NOTIFY, by a finished
///   chunk, or once a second.
/// - complete: writes finished chunks' results in one statement per batch,
///   fenced by `(node, attempt)`, so a chunk handed back in the meantime
///   leaves no result behind.
/// - control (every 250 ms): the heartbeat; stops local work whose row is
///   gone (cancelled, or its pool died); reaps dead nodes and pools.
/// - listen: the work channel, on the connection that holds the lease.
final class NodeAgent: Sendable {
    private struct Running {
        var group: PoolGroup
        var attempt: Int32
    }

    private struct Finished {
        var id: Int64
        var attempt: Int32
        var payload: ByteBuffer
    }

    private struct State {
        var nodeID: Int64
        var running: [Int64: Running] = [:]
        var finished: [Finished] = []
        /// Chunks whose results are being written now.
        var completing: Set<Int64> = []
        /// Chunks completed since the tables were last vacuumed.
        var completedSinceVacuum = 0
        var draining = false
    }

    private let database: ClusterDatabase
    private let schema: Schema
    private let logger: Logger
    private let pool: ProcessPool
    private let workers: Int
    private let drainTimeout: Duration
    private let control: Link
    private let work: Link
    private let state: Mutex<State>
    private let claimWake = Wakeup()
    private let completeWake = Wakeup()
    private let controlWake = Wakeup()
    /// Never signalled: a pause that a cancelled task still waits out.
    private let drainTick = Wakeup()

    private init(
        database: ClusterDatabase, logger: Logger, pool: ProcessPool, workers: Int, drainTimeout: Duration,
        control: Link, work: Link, nodeID: Int64
    ) {
        self.database = database
        schema = Schema(name: database.schema)
        self.logger = logger
        self.pool = pool
        self.workers = workers
        self.drainTimeout = drainTimeout
        self.control = control
        self.work = work
        state = Mutex(State(nodeID: nodeID))
    }

    static func start(
        database: ClusterDatabase, workers: Int, options: PoolOptions, drainTimeout: Duration, logger: Logger
    ) async throws -> NodeAgent {
        // The pool first, before anything touches the database: in a
        // main.swift program its creation is the first start of a process,
        // where a spawned worker re-running the top-level code takes over
        // (README, "Top-level code in main.swift"); made later, every worker
        // would register itself as a node on its way there.
        let pool = try ProcessPool(workers: workers, options: options)
        let schema = Schema(name: database.schema)
        let control = Link(database: database, logger: logger)
        let work = Link(database: database, logger: logger)
        let nodeID: Int64
        do {
            let connection = try await control.open()
            try await schema.prepare(on: connection, create: database.createsSchema, logger: logger)
            nodeID = try await register(on: connection, schema: schema, workers: workers, logger: logger)
            _ = try await work.open()
        } catch {
            await control.close()
            await work.close()
            await pool.terminate()
            throw database.describe(error, doing: "starting a cluster node")
        }
        let agent = NodeAgent(
            database: database, logger: logger, pool: pool, workers: workers, drainTimeout: drainTimeout,
            control: control, work: work, nodeID: nodeID)
        return agent
    }

    /// Adds the node's row and takes its lease.
    private static func register(
        on connection: PostgresConnection, schema: Schema, workers: Int, logger: Logger
    ) async throws -> Int64 {
        let rows = try await connection.query(
            """
            INSERT INTO \(unescaped: schema.table("node")) (host, pid, workers)
            VALUES (\(hostName()), \(Int32(getpid())), \(Int32(workers))) RETURNING id
            """, logger: logger
        ).collect()
        guard let id = try rows.first?.decode(Int64.self) else {
            throw MultiprocessingError(.schemaMismatch, "registering the node returned no row")
        }
        // A new id's lease is free; the heartbeat keeps it, and takes it again after a reconnect.
        try await connection.query(
            PostgresQuery(unsafeSQL: "SELECT \(schema.lease(schema.nodeLockSpace, id))"), logger: logger)
        return id
    }

    var nodeID: Int64 { state.withLock { $0.nodeID } }

    func drain() {
        state.withLock { $0.draining = true }
        claimWake.signal()
        controlWake.signal()
    }

    private var isDraining: Bool { state.withLock { $0.draining } }

    func run() async {
        logger.info("cluster node \(nodeID) started", metadata: ["workers": "\(workers)"])
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.claimer() }
            group.addTask { await self.completer() }
            group.addTask { await self.controller() }
            group.addTask { await self.listener() }
            await waitUntilDrained()
            group.cancelAll()
        }
        await handBack()
        pool.close(cancelPending: true)
        await pool.terminate()
        await control.close()
        await work.close()
        logger.info("cluster node \(nodeID) stopped")
    }

    /// Waits for SIGTERM, then for the running chunks (up to the drain timeout) and their results.
    private func waitUntilDrained() async {
        while !isDraining { await controlWake.wait(timeout: .seconds(1)) }
        let deadline = ContinuousClock.now + drainTimeout
        while ContinuousClock.now < deadline {
            let busy = state.withLock { !$0.running.isEmpty || !$0.finished.isEmpty }
            if !busy { return }
            // Not Task.sleep: a node drained by cancelling its task would spin here.
            await drainTick.wait(timeout: .milliseconds(50))
        }
    }

    /// Gives the chunks still held back to the cluster, without counting a death.
    private func handBack() async {
        let running = state.withLock { state -> [Running] in
            defer { state.running = [:] }
            return Array(state.running.values)
        }
        for chunk in running { pool.backend.cancel(chunk.group, stopRunning: true) }
        let me = nodeID
        _ = try? await withTimeout(.seconds(5)) { [self] in
            try await work.run { [schema, logger] connection in
                try await connection.query(
                    """
                    WITH back AS (UPDATE \(unescaped: schema.table("task"))
                                  SET id = nextval(\(schema.table("task_id_seq"))), node_id = NULL
                                  WHERE node_id = \(me) RETURNING 1),
                         gone AS (DELETE FROM \(unescaped: schema.table("node")) WHERE id = \(me))
                    SELECT pg_notify(\(schema.workChannel), ''), (SELECT count(*) FROM back)
                    """, logger: logger)
            }
        }
    }

    // MARK: Claiming

    private func claimer() async {
        while !Task.isCancelled && !isDraining {
            let (free, me, known) = state.withLock { state in
                (
                    workers + 1 - state.running.count, state.nodeID,
                    Array(state.running.keys) + state.finished.map(\.id) + Array(state.completing)
                )
            }
            var claimed = 0
            if free > 0 {
                do {
                    claimed = try await claim(free, as: me, knowing: known)
                } catch is CancellationError {
                    return
                } catch {
                    logger.error("cluster node: claiming failed", metadata: ["error": "\(error)"])
                    try? await Task.sleep(for: .seconds(1))
                    continue
                }
            }
            if free <= 0 || claimed < free { await claimWake.wait(timeout: .seconds(1)) }
        }
    }

    /// Claims up to `count` waiting chunks, and takes up the chunks this node
    /// holds but does not know of (`known` are those it runs or is writing).
    ///
    /// Those are the chunks of a claim whose reply the connection lost after
    /// the server committed it: the statement runs again on a new connection,
    /// and without this the first claim's chunks would stay with a live node
    /// that never runs them, and the map would stall.
    private func claim(_ count: Int, as me: Int64, knowing known: [Int64]) async throws -> Int {
        let rows = try await work.run { [schema, logger] connection in
            try await connection.query(
                """
                WITH c AS (SELECT id FROM \(unescaped: schema.table("task")) WHERE node_id IS NULL
                           ORDER BY id LIMIT \(count) FOR UPDATE SKIP LOCKED),
                     u AS (UPDATE \(unescaped: schema.table("task")) t SET node_id = \(me), attempt = t.attempt + 1
                           FROM c WHERE t.id = c.id
                           RETURNING t.id, t.attempt, t.type_name, t.label, t.items, t.first_item, t.payload)
                SELECT * FROM u
                UNION ALL
                SELECT id, attempt, type_name, label, items, first_item, payload FROM \(unescaped: schema.table("task"))
                WHERE node_id = \(me) AND NOT (id = ANY(\(known)::int8[]))
                """, logger: logger
            ).collect()
        }
        var chunks: [PoolChunk] = []
        for row in rows {
            let (id, attempt, typeName, label, items, first, payload) = try row.decode(
                (Int64, Int32, String, String, Int32, Int64, ByteBuffer).self)
            let group = PoolGroup.make()
            let itemCount = Int(items)
            state.withLock { $0.running[id] = Running(group: group, attempt: attempt) }
            chunks.append(
                PoolChunk(
                    kind: PoolWorkKind(typeName: typeName, label: label), payload: Array(buffer: payload),
                    descriptors: [], items: itemCount, firstItem: first < 0 ? nil : Int(first), group: group
                ) { [weak self] result in
                    self?.finished(id: id, attempt: attempt, items: itemCount, result: result)
                })
        }
        if !chunks.isEmpty {
            do {
                try pool.backend.submit(chunks)
            } catch {
                // The local pool is closing: the rows go back with the rest when the node drains.
                logger.error("cluster node: the local pool refused chunks", metadata: ["error": "\(error)"])
            }
        }
        return rows.count
    }

    /// A local chunk finished: queue its result, unless it was taken away meanwhile.
    private func finished(id: Int64, attempt: Int32, items: Int, result: ChunkResult) {
        let bytes: [UInt8]
        do {
            bytes = try result.encoded()
        } catch {
            bytes = (try? ChunkResult.failed(items: items, error).encoded()) ?? []
        }
        let kept = state.withLock { state -> Bool in
            guard let running = state.running[id], running.attempt == attempt else { return false }
            state.running[id] = nil
            state.finished.append(Finished(id: id, attempt: attempt, payload: ByteBuffer(bytes: bytes)))
            return true
        }
        guard kept else { return }
        completeWake.signal()
        claimWake.signal()
    }

    // MARK: Completing

    private func completer() async {
        while !Task.isCancelled {
            let (batch, me) = state.withLock { state -> ([Finished], Int64) in
                defer { state.finished = [] }
                state.completing = Set(state.finished.map(\.id))
                return (state.finished, state.nodeID)
            }
            if batch.isEmpty {
                await completeWake.wait(timeout: .seconds(1))
                continue
            }
            do {
                try await complete(batch, as: me)
                state.withLock {
                    $0.completing = []
                    $0.completedSinceVacuum += batch.count
                }
            } catch is CancellationError {
                state.withLock {
                    $0.finished = batch + $0.finished
                    $0.completing = []
                }
                return
            } catch {
                logger.error("cluster node: writing results failed", metadata: ["error": "\(error)"])
                // Written again later: a live node that dropped them would hold their chunks forever.
                state.withLock {
                    $0.finished = batch + $0.finished
                    $0.completing = []
                }
                try? await Task.sleep(for: .seconds(1))
            }
        }
        // Drained: the last results still go out.
        let rest = state.withLock { state -> [Finished] in
            defer { state.finished = [] }
            return state.finished
        }
        if !rest.isEmpty {
            let me = nodeID
            _ = try? await withTimeout(.seconds(5)) { [self] in try await complete(rest, as: me) }
        }
    }

    /// Moves finished chunks from `task` to `result` in one statement: only
    /// rows still claimed by this node at this attempt move, and a result
    /// already there for the chunk stays the only one.
    private func complete(_ batch: [Finished], as me: Int64) async throws {
        let ids = batch.map(\.id)
        let attempts = batch.map(\.attempt)
        let payloads = batch.map(\.payload)
        _ = try await work.run { [schema, logger] connection in
            try await connection.query(
                """
                WITH r AS (SELECT * FROM unnest(\(ids)::int8[], \(attempts)::int4[], \(payloads)::bytea[])
                                      AS r(id, attempt, payload)),
                     d AS (DELETE FROM \(unescaped: schema.table("task")) t USING r
                           WHERE t.id = r.id AND t.node_id = \(me) AND t.attempt = r.attempt
                           RETURNING t.pool_id, t.chunk, r.payload),
                     i AS (INSERT INTO \(unescaped: schema.table("result")) (pool_id, chunk, payload)
                           SELECT pool_id, chunk, payload FROM d ON CONFLICT DO NOTHING RETURNING pool_id)
                SELECT pg_notify(\(schema.name + "_result_") || p::text, '') FROM (SELECT DISTINCT pool_id p FROM i) x
                """, logger: logger
            ).collect()
        }
    }

    // MARK: Control

    private func controller() async {
        var lastVacuum = ContinuousClock.now
        while !Task.isCancelled {
            do {
                try await heartbeat()
                try await stopVanishedChunks()
                try await reap()
                if ContinuousClock.now - lastVacuum >= Self.vacuumInterval {
                    lastVacuum = ContinuousClock.now
                    try await vacuum()
                }
            } catch is CancellationError {
                return
            } catch {
                logger.error("cluster node: control failed", metadata: ["error": "\(error)"])
            }
            await controlWake.wait(timeout: .milliseconds(250))
        }
    }

    private func heartbeat() async throws {
        let me = nodeID
        let rows = try await control.run { [schema, logger] connection in
            try await connection.query(
                PostgresQuery(
                    unsafeSQL: """
                        UPDATE \(schema.table("node")) SET last_seen = now() WHERE id = \(me)
                        RETURNING \(schema.lease(schema.nodeLockSpace, me))
                        """), logger: logger
            ).collect()
        }
        guard rows.isEmpty else { return }
        // Fenced: the cluster took this node for dead and handed its chunks to
        // others. Stop them here, and join again as a new node.
        logger.warning("cluster node \(me) was fenced; joining again")
        let running = state.withLock { state -> [Running] in
            defer { state.running = [:] }
            return Array(state.running.values)
        }
        for chunk in running { pool.backend.cancel(chunk.group, stopRunning: true) }
        let id = try await control.run { [schema, logger, workers] connection in
            try await connection.query(
                // Every count of the old lease (each heartbeat took it again); the
                // control connection holds no other session lock.
                "SELECT pg_advisory_unlock_all()", logger: logger)
            return try await Self.register(on: connection, schema: schema, workers: workers, logger: logger)
        }
        state.withLock { $0.nodeID = id }
        claimWake.signal()
    }

    /// How often a node that completed chunks vacuums the queue's tables.
    static let vacuumInterval = Duration.seconds(1)

    /// Vacuums `task` and `result` when this node completed chunks since the last time.
    ///
    /// Every claim, completion and read leaves dead row versions whose index
    /// entries the next scans walk: at a thousand chunks a second, the server's
    /// autovacuum (once a minute by default) lets a claim's cost double
    /// between its runs. A vacuum each second keeps the dead rows to a
    /// second's worth; it skips a table another node is vacuuming, and never
    /// truncates it (which would lock out claims).
    private func vacuum() async throws {
        let completed = state.withLock { state in
            defer { state.completedSinceVacuum = 0 }
            return state.completedSinceVacuum
        }
        guard completed > 0 else { return }
        _ = try await control.run { [schema, logger] connection in
            try await connection.query(
                PostgresQuery(
                    unsafeSQL:
                        "VACUUM (SKIP_LOCKED, TRUNCATE false) \(schema.table("task")), \(schema.table("result"))"),
                logger: logger
            ).collect()
        }
    }

    /// Stops local chunks whose rows are gone or no longer this node's:
    /// cancelled by their driver, dropped with a dead driver, or handed back.
    private func stopVanishedChunks() async throws {
        let (snapshot, me) = state.withLock { (Array($0.running.keys), $0.nodeID) }
        guard !snapshot.isEmpty else { return }
        let rows = try await control.run { [schema, logger] connection in
            try await connection.query(
                """
                SELECT id FROM \(unescaped: schema.table("task"))
                WHERE id = ANY(\(snapshot)::int8[]) AND node_id = \(me)
                """, logger: logger
            ).collect()
        }
        var present = Set<Int64>()
        for row in rows { present.insert(try row.decode(Int64.self)) }
        let stopped = state.withLock { state -> [PoolGroup] in
            snapshot.filter { !present.contains($0) }.compactMap { state.running.removeValue(forKey: $0)?.group }
        }
        for group in stopped { pool.backend.cancel(group, stopRunning: true) }
        if !stopped.isEmpty { claimWake.signal() }
    }

    /// Hands back the chunks of dead nodes, fails poison chunks, drops dead pools.
    ///
    /// A node is dead when its lease lock is free and its heartbeat is more
    /// than a second old, or its heartbeat is more than five seconds old (a
    /// wedged process, or a network partition that the server has not yet
    /// noticed). A pool is dead after two seconds without its lock, or ten
    /// without a heartbeat. Ages count from the server's start when it
    /// restarted more recently, so a restart does not kill everyone.
    private func reap() async throws {
        let me = nodeID
        let rows = try await control.run { [schema, logger] connection in
            try await connection.query(
                """
                WITH held AS (
                         SELECT classid::int8 AS space, objid::int8 AS id FROM pg_locks
                         WHERE locktype = 'advisory' AND objsubid = 2 AND granted
                           AND database = (SELECT oid FROM pg_database WHERE datname = current_database())),
                     since AS (SELECT greatest(now() - pg_postmaster_start_time(), interval '0') AS up),
                     dead_nodes AS (
                         DELETE FROM \(unescaped: schema.table("node")) n
                         WHERE n.id <> \(me) AND (
                             least(now() - n.last_seen, (SELECT up FROM since)) > interval '5 seconds'
                             OR (least(now() - n.last_seen, (SELECT up FROM since)) > interval '1 second'
                                 AND NOT EXISTS (SELECT 1 FROM held
                                                 WHERE space = \(Int64(UInt32(bitPattern: schema.nodeLockSpace)))
                                                   AND held.id = n.id)))
                         RETURNING n.id),
                     dead_pools AS (
                         DELETE FROM \(unescaped: schema.table("pool")) p
                         WHERE least(now() - p.last_seen, (SELECT up FROM since)) > interval '10 seconds'
                            OR (least(now() - p.last_seen, (SELECT up FROM since)) > interval '2 seconds'
                                AND NOT EXISTS (SELECT 1 FROM held
                                                WHERE space = \(Int64(UInt32(bitPattern: schema.poolLockSpace)))
                                                  AND held.id = p.id))
                         RETURNING p.id)
                SELECT (SELECT count(*) FROM dead_nodes), (SELECT count(*) FROM dead_pools)
                """, logger: logger
            ).collect()
        }
        if let row = rows.first {
            let (nodes, pools) = try row.decode((Int64, Int64).self)
            if nodes > 0 || pools > 0 {
                logger.info("cluster node \(me) reaped \(nodes) dead nodes and \(pools) dead pools")
            }
        }
        try await requeueOrphans()
    }

    /// Chunks claimed by nodes that are no longer in the `node` table go back
    /// to the queue at its tail, or fail as poison on their third death.
    private func requeueOrphans() async throws {
        let limit = Int32(ClusterNode.maximumDeaths)
        let moved = try await control.run { [schema, logger] connection in
            try await connection.query(
                """
                WITH orphans AS (
                         SELECT id FROM \(unescaped: schema.table("task")) t
                         WHERE t.node_id IS NOT NULL AND t.deaths + 1 < \(limit)
                           AND NOT EXISTS (SELECT 1 FROM \(unescaped: schema.table("node")) n WHERE n.id = t.node_id)
                         FOR UPDATE SKIP LOCKED),
                     moved AS (
                         UPDATE \(unescaped: schema.table("task")) t
                         SET id = nextval(\(schema.table("task_id_seq"))), node_id = NULL, deaths = t.deaths + 1
                         FROM orphans o WHERE t.id = o.id RETURNING 1)
                SELECT count(*) FROM moved
                """, logger: logger
            ).collect()
        }
        if let row = moved.first, let count = try? row.decode(Int64.self), count > 0 {
            logger.info("cluster node \(nodeID) handed back \(count) chunks of dead nodes")
            _ = try await control.run { [schema, logger] connection in
                try await connection.query("SELECT pg_notify(\(schema.workChannel), '')", logger: logger)
            }
        }
        let poison = try await control.run { [schema, logger] connection in
            try await connection.query(
                """
                SELECT id, node_id, items, label, deaths + 1 FROM \(unescaped: schema.table("task")) t
                WHERE t.node_id IS NOT NULL AND t.deaths + 1 >= \(limit)
                  AND NOT EXISTS (SELECT 1 FROM \(unescaped: schema.table("node")) n WHERE n.id = t.node_id)
                """, logger: logger
            ).collect()
        }
        for row in poison {
            let (id, node, items, label, deaths) = try row.decode((Int64, Int64, Int32, String, Int32).self)
            var error = MultiprocessingError(
                .nodeDied,
                "a chunk of \(items) items of \(label) was running on a node that died, \(deaths) times; "
                    + "it failed as poison instead of running again")
            error.work = label
            let payload = ByteBuffer(bytes: try ChunkResult.failed(items: Int(items), error).encoded())
            _ = try await control.run { [schema, logger] connection in
                try await connection.query(
                    """
                    WITH d AS (DELETE FROM \(unescaped: schema.table("task"))
                               WHERE id = \(id) AND node_id = \(node) RETURNING pool_id, chunk),
                         i AS (INSERT INTO \(unescaped: schema.table("result")) (pool_id, chunk, payload)
                               SELECT pool_id, chunk, \(payload) FROM d ON CONFLICT DO NOTHING RETURNING pool_id)
                    SELECT pg_notify(\(schema.name + "_result_") || pool_id::text, '') FROM i
                    """, logger: logger
                ).collect()
            }
            logger.warning("cluster node \(nodeID) failed a poison chunk of \(label)")
        }
    }

    private func listener() async {
        while !Task.isCancelled {
            do {
                let connection = try await control.live()
                try await connection.listen(on: schema.workChannel) { notifications in
                    claimWake.signal()
                    for try await notification in notifications {
                        if notification.payload == "cancel" { controlWake.signal() } else { claimWake.signal() }
                    }
                }
            } catch {
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
    }
}
