import Logging
import Multiprocessing
import PostgresNIO

/// One connection to the cluster's database that comes back after the
/// server restarts or the network drops: statements that fail because the
/// connection was lost run again on a new one.
///
/// Statements given to ``run(_:)`` must therefore be safe to repeat: every
/// statement of the cluster is (inserts skip rows already there, completions
/// are fenced by the claim's attempt, deletes of what is gone do nothing).
actor Link {
    private let database: ClusterDatabase
    private let logger: Logger
    private var connection: PostgresConnection?
    private var closed = false
    /// The new connection being made, which every statement that found the old one lost waits for.
    private var connecting: Task<PostgresConnection, any Error>?
    /// How many times the connection was made again.
    private(set) var reconnects = 0

    init(database: ClusterDatabase, logger: Logger) {
        self.database = database
        self.logger = logger
    }

    /// Connects for the first time; failures are typed and not retried.
    func open() async throws -> PostgresConnection {
        let connection = try await database.connect(logger: logger)
        self.connection = connection
        return connection
    }

    /// Runs `body` on the connection, reconnecting (with a growing pause,
    /// up to a second) for as long as the connection is lost.
    func run<T: Sendable>(_ body: @Sendable (PostgresConnection) async throws -> T) async throws -> T {
        var pause = Duration.milliseconds(50)
        while true {
            try Task.checkCancellation()
            guard !closed else { throw MultiprocessingError(.closed, "the cluster's connection is closed") }
            var used: PostgresConnection?
            do {
                let connection = try await current()
                used = connection
                return try await body(connection)
            } catch where ClusterDatabase.isConnectionLoss(error) {
                logger.debug("cluster database connection lost", metadata: ["error": "\(error)"])
                // Only the connection that failed is dropped: another statement
                // may have made a new one meanwhile.
                if let used {
                    if connection === used { connection = nil }
                    try? await used.close()
                }
                try await Task.sleep(for: pause)
                pause = min(pause * 2, .seconds(1))
            } catch {
                throw database.describe(error, doing: "a cluster statement")
            }
        }
    }

    /// The connection, made again (and set up again) when it was lost.
    ///
    /// The statements that find it lost at the same time wait for one new
    /// connection: each making its own would leave all but the last unclosed.
    private func current() async throws -> PostgresConnection {
        if let connection, !connection.isClosed { return connection }
        if let connecting { return try await connecting.value }
        let stale = connection
        connection = nil
        let task = Task.detached { [database, logger] () async throws -> PostgresConnection in
            if let stale { try? await stale.close() }
            return try await database.connect(logger: logger)
        }
        connecting = task
        let fresh: PostgresConnection
        do {
            fresh = try await task.value
        } catch {
            connecting = nil
            throw error
        }
        connecting = nil
        guard !closed else {
            try? await fresh.close()
            throw MultiprocessingError(.closed, "the cluster's connection is closed")
        }
        connection = fresh
        reconnects += 1
        return fresh
    }

    /// The connection as it is now, for a listener that must notice its loss.
    func live() async throws -> PostgresConnection {
        try await run { $0 }
    }

    func close() async {
        closed = true
        if let connection {
            self.connection = nil
            try? await connection.close()
        }
    }
}
