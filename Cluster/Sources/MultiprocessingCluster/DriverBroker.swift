import Foundation
import Logging
@_spi(PoolBackend) import Multiprocessing
import NIOCore
import PostgresNIO
import Synchronization

/// The driver's side of the cluster: a ``PoolBackend`` whose chunks become
/// rows of the `task` table and whose results come back from the `result` table.
///
/// Three loops run while the pool lives: a writer (inserts queued chunks
/// and deletes cancelled ones), a reader (woken by the pool's NOTIFY channel,
/// or every 250 ms, it reads results, hands them out and deletes them), and
/// a heartbeat (the pool's lease, and the nodes' worker count).
final class DriverBroker: PoolBackend, Sendable {
    private struct State {
        /// Chunks handed to the database whose results have not been handed out, by chunk number.
        var pending: [Int64: PoolChunk] = [:]
        /// Chunks not yet inserted, in order.
        var outgoing: [Int64] = []
        /// Task rows to delete: chunks cancelled by the driver.
        var cancelledRows: [Int64] = []
        /// Whether the nodes must be told to stop running cancelled chunks.
        var tellNodes = false
        /// Result rows handed out, to delete on the next read.
        var consumed: [Int64] = []
        var nextChunk: Int64 = 0
        /// No chunk below this one is pending: it only moves up.
        var lowestPending: Int64 = 0
        var closed = false
        var cancelUnclaimed = false
        var terminated = false
        /// Why the pool broke (its lease was lost): every later chunk fails with it.
        var broken: MultiprocessingError?
    }

    let poolID: Int64
    private let schema: Schema
    private let database: ClusterDatabase
    private let logger: Logger
    private let control: Link
    private let work: Link
    private let state = Mutex(State())
    private let workers = Atomic<Int>(1)
    private let writerWake = Wakeup()
    private let readerWake = Wakeup()
    private let endWake = Wakeup()
    let ended = Ended()

    var workerCount: Int { workers.load(ordering: .relaxed) }

    private init(
        poolID: Int64, database: ClusterDatabase, logger: Logger, control: Link, work: Link, workers: Int
    ) {
        self.poolID = poolID
        self.database = database
        schema = Schema(name: database.schema)
        self.logger = logger
        self.control = control
        self.work = work
        self.workers.store(max(1, workers), ordering: .relaxed)
    }

    static func start(database: ClusterDatabase, logger: Logger) async throws -> DriverBroker {
        let schema = Schema(name: database.schema)
        let control = Link(database: database, logger: logger)
        let work = Link(database: database, logger: logger)
        let connection = try await control.open()
        let (id, workers): (Int64, Int)
        do {
            try await schema.prepare(on: connection, create: database.createsSchema, logger: logger)
            let rows = try await connection.query(
                """
                INSERT INTO \(unescaped: schema.table("pool")) (host, pid) VALUES (\(hostName()), \(Int32(getpid())))
                RETURNING id, (SELECT coalesce(sum(workers), 0)::int8 FROM \(unescaped: schema.table("node")))
                """, logger: logger
            ).collect()
            guard let row = rows.first else {
                throw MultiprocessingError(.schemaMismatch, "registering the pool returned no row")
            }
            let decoded = try row.decode((Int64, Int64).self)
            (id, workers) = (decoded.0, Int(decoded.1))
            // A new id's lease is free; the heartbeat keeps it, and takes it again after a reconnect.
            try await connection.query(
                PostgresQuery(unsafeSQL: "SELECT \(schema.lease(schema.poolLockSpace, id))"), logger: logger)
            _ = try await work.open()
        } catch {
            await control.close()
            await work.close()
            throw database.describe(error, doing: "starting a cluster pool")
        }
        let broker = DriverBroker(
            poolID: id, database: database, logger: logger, control: control, work: work, workers: workers)
        Task { await broker.run() }
        return broker
    }

    // MARK: PoolBackend

    func submit(_ chunks: [PoolChunk]) throws {
        if chunks.contains(where: { !$0.descriptors.isEmpty }) {
            throw MultiprocessingError(
                .invalidArgument,
                "shared memory, queues, locks and connections cannot travel to another machine; "
                    + "a cluster pool takes inputs that are plain Codable values")
        }
        try state.withLock { state in
            if let broken = state.broken { throw broken }
            guard !state.closed && !state.terminated else {
                throw MultiprocessingError(.closed, "the cluster pool is closed")
            }
            for chunk in chunks {
                let number = state.nextChunk
                state.nextChunk += 1
                state.pending[number] = chunk
                state.outgoing.append(number)
            }
        }
        writerWake.signal()
    }

    func cancel(_ group: PoolGroup, stopRunning: Bool) {
        let cancelled = state.withLock { state -> [PoolChunk] in
            let numbers = state.pending.filter { $0.value.group == group }.map(\.key)
            guard !numbers.isEmpty else { return [] }
            let set = Set(numbers)
            state.outgoing.removeAll { set.contains($0) }
            state.cancelledRows += numbers
            if stopRunning { state.tellNodes = true }
            return numbers.compactMap { state.pending.removeValue(forKey: $0) }
        }
        guard !cancelled.isEmpty else { return }
        for chunk in cancelled { chunk.completion(.failed(items: chunk.items, CancellationError())) }
        writerWake.signal()
        endWake.signal()
    }

    func partialItems(of group: PoolGroup) -> Int { 0 }

    func close(cancelPending: Bool) {
        state.withLock { state in
            state.closed = true
            if cancelPending { state.cancelUnclaimed = true }
        }
        writerWake.signal()
        endWake.signal()
    }

    func terminate() {
        let failed = state.withLock { state -> [PoolChunk] in
            state.closed = true
            state.terminated = true
            defer {
                state.pending = [:]
                state.outgoing = []
            }
            return Array(state.pending.values)
        }
        let error = MultiprocessingError(.closed, "the cluster pool was terminated")
        for chunk in failed { chunk.completion(.failed(items: chunk.items, error)) }
        endWake.signal()
    }

    func waitUntilEnded() {
        ended.waitBlocking()
    }

    // MARK: The loops

    private func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.writer() }
            group.addTask { await self.reader() }
            group.addTask { await self.heartbeat() }
            group.addTask { await self.listener() }
            while !shouldEnd() { await endWake.wait(timeout: .seconds(1)) }
            group.cancelAll()
        }
        // The cascade deletes every chunk and result left: nodes running one
        // see its row gone and stop.
        _ = try? await withTimeout(.seconds(5)) { [self] in
            try await work.run { [self] connection in
                try await connection.query(
                    """
                    WITH gone AS (DELETE FROM \(unescaped: schema.table("pool")) WHERE id = \(poolID) RETURNING id)
                    SELECT pg_notify(\(schema.workChannel), 'cancel') FROM gone
                    """, logger: logger)
            }
        }
        await control.close()
        await work.close()
        ended.fire()
    }

    private func shouldEnd() -> Bool {
        state.withLock { state in
            state.terminated || (state.closed && state.pending.isEmpty) || state.broken != nil
        }
    }

    private func writer() async {
        var reconnects = 0
        while !Task.isCancelled {
            let seen = await work.reconnects
            if seen != reconnects {
                reconnects = seen
                do {
                    try await insertLostChunks()
                } catch is CancellationError {
                    return
                } catch {
                    fail(error)
                    return
                }
            }
            let (numbers, chunks, cancelled, tellNodes, cancelUnclaimed) = state.withLock {
                state -> ([Int64], [PoolChunk], [Int64], Bool, Bool) in
                var take: [Int64] = []
                var chunks: [PoolChunk] = []
                var bytes = 0
                while !state.outgoing.isEmpty && take.count < 2000 && bytes < 16 << 20 {
                    let number = state.outgoing.removeFirst()
                    guard let chunk = state.pending[number] else { continue }
                    take.append(number)
                    chunks.append(chunk)
                    bytes += chunk.payload.count
                }
                let cancelled = state.cancelledRows
                state.cancelledRows = []
                let tell = state.tellNodes
                state.tellNodes = false
                let unclaimed = state.cancelUnclaimed
                state.cancelUnclaimed = false
                return (take, chunks, cancelled, tell, unclaimed)
            }
            do {
                if !numbers.isEmpty { try await insert(numbers, chunks) }
                if !cancelled.isEmpty { try await deleteTasks(cancelled, tellNodes: tellNodes) }
                if cancelUnclaimed { try await cancelUnclaimedChunks() }
            } catch is CancellationError {
                return
            } catch {
                fail(error)
                return
            }
            if numbers.isEmpty && cancelled.isEmpty && !cancelUnclaimed {
                await writerWake.wait(timeout: .seconds(1))
            }
        }
    }

    private func insert(_ numbers: [Int64], _ chunks: [PoolChunk]) async throws {
        let types = chunks.map(\.kind.typeName)
        let labels = chunks.map(\.kind.label)
        let items = chunks.map { Int32($0.items) }
        let firsts = chunks.map { Int64($0.firstItem ?? -1) }
        let payloads = chunks.map { ByteBuffer(bytes: $0.payload) }
        let pool = poolID
        _ = try await work.run { [schema, logger] connection in
            try await connection.query(
                """
                WITH added AS (
                    INSERT INTO \(unescaped: schema.table("task")) (pool_id, chunk, type_name, label, items, first_item, payload)
                    SELECT \(pool), * FROM unnest(\(numbers)::int8[], \(types)::text[], \(labels)::text[],
                                                  \(items)::int4[], \(firsts)::int8[], \(payloads)::bytea[])
                    ON CONFLICT (pool_id, chunk) DO NOTHING RETURNING 1)
                SELECT pg_notify(\(schema.workChannel), ''), (SELECT count(*) FROM added)
                """, logger: logger)
        }
    }

    /// Inserts again the chunks the database lost.
    ///
    /// A server that crashes may lose commits it had acknowledged (with
    /// `synchronous_commit = off`, or a replica promoted behind its primary).
    /// A lost claim or completion of a node heals by itself (the row is
    /// claimed or run again); a lost insert would leave a chunk the driver
    /// waits for and no node knows of. So after every new connection the
    /// writer, the only one that inserts, looks for chunks it inserted that
    /// have neither a task row nor a result row.
    private func insertLostChunks() async throws {
        let inserted = state.withLock { state -> [Int64] in
            let waiting = Set(state.outgoing)
            return state.pending.keys.filter { !waiting.contains($0) }.sorted()
        }
        guard !inserted.isEmpty else { return }
        let pool = poolID
        let rows = try await work.run { [schema, logger] connection in
            try await connection.query(
                """
                SELECT n FROM unnest(\(inserted)::int8[]) AS n
                WHERE NOT EXISTS (SELECT 1 FROM \(unescaped: schema.table("task")) WHERE pool_id = \(pool) AND chunk = n)
                  AND NOT EXISTS (SELECT 1 FROM \(unescaped: schema.table("result")) WHERE pool_id = \(pool) AND chunk = n)
                """, logger: logger
            ).collect()
        }
        var lost = Set<Int64>()
        for row in rows { lost.insert(try row.decode(Int64.self)) }
        // A chunk handed out or cancelled meanwhile is not inserted again.
        let again = state.withLock { state in
            lost.sorted().compactMap { number in state.pending[number].map { (number, $0) } }
        }
        guard !again.isEmpty else { return }
        logger.warning(
            "the cluster database lost chunks it had acknowledged; inserting them again",
            metadata: ["pool": "\(poolID)", "chunks": "\(again.count)"])
        try await insert(again.map(\.0), again.map(\.1))
    }

    private func deleteTasks(_ numbers: [Int64], tellNodes: Bool) async throws {
        let pool = poolID
        _ = try await work.run { [schema, logger] connection in
            try await connection.query(
                """
                WITH gone AS (DELETE FROM \(unescaped: schema.table("task"))
                              WHERE pool_id = \(pool) AND chunk = ANY(\(numbers)::int8[]) RETURNING 1),
                     -- A result written before the cancel: the reader no longer looks below
                     -- its lowest pending chunk, so it goes here.
                     late AS (DELETE FROM \(unescaped: schema.table("result"))
                              WHERE pool_id = \(pool) AND chunk = ANY(\(numbers)::int8[]))
                SELECT CASE WHEN \(tellNodes) THEN pg_notify(\(schema.workChannel), 'cancel') END,
                       (SELECT count(*) FROM gone)
                """, logger: logger)
        }
    }

    private func cancelUnclaimedChunks() async throws {
        let pool = poolID
        let rows = try await work.run { [schema, logger] connection in
            try await connection.query(
                """
                DELETE FROM \(unescaped: schema.table("task"))
                WHERE pool_id = \(pool) AND node_id IS NULL RETURNING chunk
                """, logger: logger
            ).collect()
        }
        var numbers = Set<Int64>()
        for row in rows { numbers.insert(try row.decode(Int64.self)) }
        let cancelled = state.withLock { state -> [PoolChunk] in
            // Chunks not even inserted yet are cancelled too.
            for number in state.outgoing { numbers.insert(number) }
            state.outgoing = []
            return numbers.compactMap { state.pending.removeValue(forKey: $0) }
        }
        for chunk in cancelled { chunk.completion(.failed(items: chunk.items, CancellationError())) }
        endWake.signal()
    }

    private func reader() async {
        while !Task.isCancelled {
            let (consumed, waiting) = state.withLock { state -> ([Int64], Bool) in
                defer { state.consumed = [] }
                return (state.consumed, !state.pending.isEmpty)
            }
            var full = false
            if waiting || !consumed.isEmpty {
                do {
                    full = try await read(deleting: consumed)
                } catch is CancellationError {
                    return
                } catch {
                    state.withLock { $0.consumed += consumed }
                    fail(error)
                    return
                }
            }
            if !full { await readerWake.wait(timeout: .milliseconds(250)) }
        }
    }

    /// Reads the results waiting (up to a batch), hands them out, and deletes
    /// the ones handed out before. Returns whether the batch was full.
    private func read(deleting consumed: [Int64]) async throws -> Bool {
        let pool = poolID
        let limit = 2000
        // Every result below the lowest chunk not yet handed out was read:
        // the scan starts there, not at the dead entries of those before it.
        let lowest = state.withLock { state in
            while state.lowestPending < state.nextChunk && state.pending[state.lowestPending] == nil {
                state.lowestPending += 1
            }
            return state.lowestPending
        }
        let rows = try await work.run { [schema, logger] connection in
            try await connection.query(
                """
                WITH gone AS (DELETE FROM \(unescaped: schema.table("result"))
                              WHERE pool_id = \(pool) AND chunk = ANY(\(consumed)::int8[]))
                SELECT chunk, payload FROM \(unescaped: schema.table("result"))
                WHERE pool_id = \(pool) AND chunk >= \(lowest) AND NOT (chunk = ANY(\(consumed)::int8[]))
                ORDER BY chunk LIMIT \(limit)
                """, logger: logger
            ).collect()
        }
        var delivered: [(PoolChunk, ChunkResult)] = []
        var numbers: [Int64] = []
        for row in rows {
            let (number, payload) = try row.decode((Int64, ByteBuffer).self)
            numbers.append(number)
            guard let chunk = state.withLock({ $0.pending.removeValue(forKey: number) }) else { continue }
            let result: ChunkResult
            do {
                result = try ChunkResult(encoded: Array(buffer: payload))
            } catch {
                result = .failed(items: chunk.items, error)
            }
            delivered.append((chunk, result))
        }
        state.withLock { $0.consumed += numbers }
        for (chunk, result) in delivered { chunk.completion(result) }
        if !delivered.isEmpty { endWake.signal() }
        return rows.count == limit
    }

    private func heartbeat() async {
        while !Task.isCancelled {
            do {
                let rows = try await control.run { [schema, logger, poolID] connection in
                    try await connection.query(
                        PostgresQuery(
                            unsafeSQL: """
                                UPDATE \(schema.table("pool")) SET last_seen = now() WHERE id = \(poolID)
                                RETURNING (SELECT coalesce(sum(workers), 0)::int8 FROM \(schema.table("node"))),
                                          \(schema.lease(schema.poolLockSpace, poolID))
                                """), logger: logger
                    ).collect()
                }
                guard let row = rows.first else {
                    fail(
                        MultiprocessingError(
                            .databaseUnavailable,
                            "the cluster dropped this pool (pool \(poolID)): its lease ran out while the database "
                                + "could not be reached"))
                    return
                }
                workers.store(max(1, Int(try row.decode((Int64, Bool).self).0)), ordering: .relaxed)
            } catch is CancellationError {
                return
            } catch {
                fail(error)
                return
            }
            try? await Task.sleep(for: .milliseconds(500))
        }
    }

    private func listener() async {
        while !Task.isCancelled {
            do {
                let connection = try await control.live()
                try await connection.listen(on: schema.resultChannel(pool: poolID)) { notifications in
                    // Results may have come while nobody listened.
                    readerWake.signal()
                    for try await _ in notifications { readerWake.signal() }
                }
            } catch {
                try? await Task.sleep(for: .milliseconds(100))
            }
        }
    }

    /// Fails everything pending with `error`: the pool cannot go on.
    private func fail(_ error: any Error) {
        let typed =
            (error as? MultiprocessingError)
            ?? MultiprocessingError(.databaseUnavailable, "the cluster pool lost its database: \(error)")
        logger.error("cluster pool \(poolID) failed", metadata: ["error": "\(typed)"])
        let failed = state.withLock { state -> [PoolChunk] in
            state.broken = typed
            defer {
                state.pending = [:]
                state.outgoing = []
            }
            return Array(state.pending.values)
        }
        for chunk in failed { chunk.completion(.failed(items: chunk.items, typed)) }
        endWake.signal()
    }
}

/// The machine's name, for the `pool` and `node` tables.
func hostName() -> String {
    ProcessInfo.processInfo.hostName
}

/// Runs `body`, giving up after `timeout`.
func withTimeout<T: Sendable>(_ timeout: Duration, _ body: @escaping @Sendable () async throws -> T) async throws -> T {
    try await withThrowingTaskGroup(of: T?.self) { group in
        group.addTask { try await body() }
        group.addTask {
            try await Task.sleep(for: timeout)
            return nil
        }
        defer { group.cancelAll() }
        guard let first = try await group.next(), let value = first else {
            throw MultiprocessingError(.timedOut, "a cluster statement did not finish within \(timeout)")
        }
        return value
    }
}
