import Logging
import Multiprocessing
import PostgresNIO

/// The cluster's tables, created and migrated by the library.
///
/// - `version`: one row, the schema's version.
/// - `pool`: one row per driver (a ``ClusterPool``), with its heartbeat.
/// - `node`: one row per live node, with its heartbeat.
/// - `task`: the chunks not yet done, one row each; `node_id` is null while
///   the chunk waits and names the node running it once claimed. A chunk
///   handed back gets a new `id`, so claims (in `id` order) only move forward.
/// - `result`: chunk results not yet read by their driver; the primary key
///   `(pool_id, chunk)` makes a second result for a chunk impossible.
///
/// Rows are deleted as soon as they are consumed, so both tables hold only
/// the chunks in flight.
struct Schema: Sendable {
    /// The version this library writes and reads.
    static let version = 1
    /// Serialises creation and migration of the schema.
    static let migrationLock: Int64 = 0x6D70_6D69_6772

    let name: String
    /// Namespaces of the advisory locks that are the leases of nodes and
    /// pools: the schema's own, since node and pool ids count from 1 in every
    /// schema and two clusters may share a database.
    let nodeLockSpace: Int32
    let poolLockSpace: Int32

    init(name: String) {
        self.name = name
        nodeLockSpace = Self.lockSpace(name + ".node")
        poolLockSpace = Self.lockSpace(name + ".pool")
    }

    /// A stable 32-bit name for `text` (FNV-1a): the same in every process.
    private static func lockSpace(_ text: String) -> Int32 {
        var hash: UInt32 = 2_166_136_261
        for byte in text.utf8 { hash = (hash ^ UInt32(byte)) &* 16_777_619 }
        return Int32(bitPattern: hash)
    }

    /// An expression that is true once this session holds the lease `(space, id)`.
    ///
    /// It never waits: the lease of a node or pool whose connection was lost
    /// may still be held by the old session, until the server notices that
    /// its client is gone (see ``ClusterDatabase/sessionSettings``). A
    /// heartbeat evaluates it each time, so the lease is taken again as soon
    /// as it is free, and a waiting statement never holds back the vacuum.
    /// A session that holds the lock already only counts it again, in its own
    /// table; `pg_advisory_unlock_all()` lets go of every count at once.
    func lease(_ space: Int32, _ id: Int64) -> String {
        "pg_try_advisory_lock(\(space), \(Int32(truncatingIfNeeded: id)))"
    }

    /// The channel nodes listen on for new work and for cancellations.
    var workChannel: String { "\(name)_work" }
    /// The channel a pool listens on for its results.
    func resultChannel(pool: Int64) -> String { "\(name)_result_\(pool)" }

    func table(_ table: String) -> String { "\(name).\(table)" }

    /// The statements that create version 1.
    var creation: [String] {
        [
            "CREATE SCHEMA \(name)",
            "CREATE TABLE \(name).version (version int NOT NULL)",
            "INSERT INTO \(name).version VALUES (1)",
            """
            CREATE TABLE \(name).pool (
                id bigserial PRIMARY KEY, host text NOT NULL, pid int NOT NULL,
                started timestamptz NOT NULL DEFAULT now(), last_seen timestamptz NOT NULL DEFAULT now()
            ) WITH (fillfactor = 50)
            """,
            """
            CREATE TABLE \(name).node (
                id bigserial PRIMARY KEY, host text NOT NULL, pid int NOT NULL, workers int NOT NULL,
                started timestamptz NOT NULL DEFAULT now(), last_seen timestamptz NOT NULL DEFAULT now()
            ) WITH (fillfactor = 50)
            """,
            """
            CREATE TABLE \(name).task (
                id bigserial PRIMARY KEY,
                pool_id bigint NOT NULL REFERENCES \(name).pool ON DELETE CASCADE,
                chunk bigint NOT NULL,
                type_name text NOT NULL, label text NOT NULL,
                items int NOT NULL, first_item bigint,
                payload bytea NOT NULL,
                node_id bigint, attempt int NOT NULL DEFAULT 0, deaths int NOT NULL DEFAULT 0,
                UNIQUE (pool_id, chunk)
            ) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,
                    autovacuum_vacuum_cost_delay = 0)
            """,
            "CREATE INDEX task_waiting ON \(name).task (id) WHERE node_id IS NULL",
            "CREATE INDEX task_running ON \(name).task (node_id) WHERE node_id IS NOT NULL",
            """
            CREATE TABLE \(name).result (
                pool_id bigint NOT NULL REFERENCES \(name).pool ON DELETE CASCADE,
                chunk bigint NOT NULL,
                payload bytea NOT NULL,
                PRIMARY KEY (pool_id, chunk)
            ) WITH (autovacuum_vacuum_scale_factor = 0, autovacuum_vacuum_threshold = 1000,
                    autovacuum_vacuum_cost_delay = 0)
            """,
        ]
    }

    /// Creates the schema when it is missing (and `create` allows), or checks its version.
    ///
    /// Migrations from older versions go here, one step per version, each in
    /// the same transaction as its version bump.
    ///
    /// - Throws: `.schemaMismatch` for a missing schema that may not be created,
    ///   or a version this library does not know.
    func prepare(on connection: PostgresConnection, create: Bool, logger: Logger) async throws {
        if let version = try await installedVersion(on: connection, logger: logger) {
            try check(version)
            return
        }
        guard create else {
            throw MultiprocessingError(
                .schemaMismatch,
                "the cluster schema \(name) does not exist in this database; start a node or pool with "
                    + "createsSchema (the default) to create it, or name the schema the cluster uses")
        }
        try await connection.query("BEGIN", logger: logger)
        do {
            try await connection.query("SELECT pg_advisory_xact_lock(\(Self.migrationLock))", logger: logger)
            // Another program may have created it while this one waited for the lock.
            if let version = try await installedVersion(on: connection, logger: logger) {
                try await connection.query("COMMIT", logger: logger)
                try check(version)
                return
            }
            for statement in creation { try await connection.query(PostgresQuery(unsafeSQL: statement), logger: logger) }
            try await connection.query("COMMIT", logger: logger)
        } catch {
            _ = try? await connection.query("ROLLBACK", logger: logger)
            throw error
        }
    }

    private func check(_ version: Int) throws {
        guard version == Self.version else {
            throw MultiprocessingError(
                .schemaMismatch,
                "the cluster schema \(name) has version \(version), and this library knows version \(Self.version)"
                    + (version > Self.version ? "; update the library on this machine" : ""))
        }
    }

    private func installedVersion(on connection: PostgresConnection, logger: Logger) async throws -> Int? {
        let exists = try await connection.query(
            // The catalog read with the statement's snapshot: a schema another
            // program committed while this one waited for the lock is seen.
            "SELECT EXISTS (SELECT 1 FROM pg_tables WHERE schemaname = \(name) AND tablename = 'version')",
            logger: logger
        ).collect()
        guard try exists.first?.decode(Bool.self) == true else { return nil }
        let rows = try await connection.query(
            PostgresQuery(unsafeSQL: "SELECT version FROM \(name).version"), logger: logger
        ).collect()
        guard let version = try rows.first?.decode(Int.self) else {
            throw MultiprocessingError(.schemaMismatch, "the cluster schema \(name) has no version row")
        }
        return version
    }
}
