import Foundation
import Logging
import Multiprocessing
import NIOCore
import NIOSSL
import PostgresNIO
import Synchronization

/// Where a cluster's broker lives: a PostgreSQL database, and the schema the
/// cluster's tables are in.
///
/// Every node and every driver of one cluster names the same database and
/// schema. The schema is created by the first program that connects (see
/// ``createsSchema``) and carries a version, so a later library can migrate it.
///
/// ```swift
/// let database = try ClusterDatabase(url: "postgres://mp:secret@db.example:5432/mp")
/// ```
public struct ClusterDatabase: Sendable {
    /// How to connect: host or socket, user, password, database, TLS.
    public var configuration: PostgresConnection.Configuration
    /// The schema holding the cluster's tables: lower-case letters, digits and
    /// underscores, starting with a letter. Clusters in other schemas of the
    /// same database do not see each other's work.
    public var schema: String
    /// Whether a missing schema is created (the default). When `false`, a
    /// missing schema fails with `.schemaMismatch`.
    public var createsSchema: Bool
    /// How long a first connection may take before `.databaseUnavailable`.
    public var connectTimeout: Duration

    /// A database described by a connection configuration.
    ///
    /// - Parameters:
    ///   - configuration: postgres-nio's connection configuration.
    ///   - schema: The schema for the cluster's tables.
    ///   - createsSchema: Whether a missing schema is created.
    /// - Throws: `.invalidArgument` for a schema name that is not a plain identifier.
    public init(
        configuration: PostgresConnection.Configuration, schema: String = "multiprocessing",
        createsSchema: Bool = true
    ) throws {
        guard Self.isIdentifier(schema) else {
            throw MultiprocessingError(
                .invalidArgument,
                "a cluster schema name is lower-case letters, digits and underscores starting with a letter, "
                    + "at most 40 characters, not \"\(schema)\"")
        }
        self.configuration = configuration
        self.schema = schema
        self.createsSchema = createsSchema
        connectTimeout = .seconds(10)
        // A silent network partition must drop the node's session within
        // seconds, or its advisory lock (its lease) outlives it: keepalives
        // alone do not fire while unacknowledged data is in flight.
        self.configuration.options.additionalStartupParameters += [
            ("tcp_keepalives_idle", "2"), ("tcp_keepalives_interval", "1"), ("tcp_keepalives_count", "3"),
            ("tcp_user_timeout", "5000"),
        ]
    }

    /// A database named by a URL:
    /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE?schema=NAME&sslmode=disable`.
    ///
    /// For a unix socket, give its directory as the `host` query item:
    /// `postgres://USER@/DATABASE?host=/var/run/postgresql`. `sslmode` is
    /// `disable` (the default) or `require`.
    ///
    /// - Throws: `.invalidArgument` for a URL that is not of this form, saying which part is wrong.
    public init(url: String) throws {
        guard let components = URLComponents(string: url), let scheme = components.scheme else {
            throw MultiprocessingError(
                .invalidArgument, "\"\(url)\" is not a URL; use postgres://USER:PASSWORD@HOST:PORT/DATABASE")
        }
        guard scheme == "postgres" || scheme == "postgresql" else {
            throw MultiprocessingError(
                .invalidArgument, "a cluster database URL starts with postgres://, not \(scheme)://")
        }
        guard let user = components.user?.removingPercentEncoding, !user.isEmpty else {
            throw MultiprocessingError(
                .invalidArgument, "the cluster database URL names no user: postgres://USER:PASSWORD@HOST/DATABASE")
        }
        let items = components.queryItems ?? []
        func item(_ name: String) -> String? { items.first { $0.name == name }?.value }
        let password = components.password?.removingPercentEncoding
        var database = components.path
        if database.hasPrefix("/") { database.removeFirst() }
        let databaseName = database.isEmpty ? nil : database
        var configuration: PostgresConnection.Configuration
        if let socket = item("host"), socket.hasPrefix("/") {
            let port = components.port ?? 5432
            configuration = PostgresConnection.Configuration(
                unixSocketPath: "\(socket)/.s.PGSQL.\(port)", username: user, password: password,
                database: databaseName)
        } else {
            guard let host = components.host, !host.isEmpty else {
                throw MultiprocessingError(
                    .invalidArgument,
                    "the cluster database URL names no host: postgres://USER:PASSWORD@HOST:PORT/DATABASE")
            }
            let tls: PostgresConnection.Configuration.TLS
            switch item("sslmode") ?? "disable" {
            case "disable": tls = .disable
            case "require":
                do {
                    tls = .require(try NIOSSLContext(configuration: .makeClientConfiguration()))
                } catch {
                    throw MultiprocessingError(.invalidArgument, "TLS for the cluster database: \(error)")
                }
            case let mode:
                throw MultiprocessingError(
                    .invalidArgument, "the cluster database URL's sslmode is disable or require, not \(mode)")
            }
            configuration = PostgresConnection.Configuration(
                host: host, port: components.port ?? 5432, username: user, password: password,
                database: databaseName, tls: tls)
        }
        try self.init(configuration: configuration, schema: item("schema") ?? "multiprocessing")
    }

    static func isIdentifier(_ name: String) -> Bool {
        guard let first = name.unicodeScalars.first, ("a"..."z").contains(first), name.count <= 40 else {
            return false
        }
        return name.unicodeScalars.allSatisfy { ("a"..."z").contains($0) || ("0"..."9").contains($0) || $0 == "_" }
    }

    /// Where the connection goes, for messages: "127.0.0.1:5432", a socket path.
    var endpoint: String {
        if let host = configuration.host { return "\(host):\(configuration.port ?? 5432)" }
        return configuration.unixSocketPath ?? "the configured channel"
    }
}

// MARK: Connecting

extension ClusterDatabase {
    /// Opens one connection, with its failures as typed errors.
    func connect(logger: Logger) async throws -> PostgresConnection {
        var configuration = configuration
        configuration.options.connectTimeout = .milliseconds(connectTimeout.milliseconds)
        let connection: PostgresConnection
        do {
            connection = try await PostgresConnection.connect(
                configuration: configuration, id: Self.nextID.add(1, ordering: .relaxed).newValue, logger: logger)
        } catch {
            throw describe(error, doing: "connecting to the cluster database at \(endpoint)")
        }
        do {
            try await connection.query(Self.sessionSettings, logger: logger)
        } catch {
            try? await connection.close()
            throw describe(error, doing: "setting up a connection to the cluster database at \(endpoint)")
        }
        return connection
    }

    /// Settings of every connection the cluster makes, so that the server
    /// learns within seconds that a node or pool is gone and frees its lease
    /// (the defaults take two hours for a silent network):
    ///
    /// - `tcp_keepalives_*` and `tcp_user_timeout`: a peer that stops
    ///   answering is dropped after about 5 s;
    /// - `client_connection_check_interval`: a statement running for a
    ///   client that has closed its socket stops within a second.
    ///
    /// Each is set only where the server has it (the last came in PostgreSQL 14).
    static let sessionSettings: PostgresQuery = """
        SELECT set_config(s.name, s.value, false)
        FROM (VALUES ('tcp_keepalives_idle', '2'), ('tcp_keepalives_interval', '1'), ('tcp_keepalives_count', '3'),
                     ('tcp_user_timeout', '5000'), ('client_connection_check_interval', '1000')) AS s(name, value)
        WHERE s.name IN (SELECT name FROM pg_settings)
        """

    /// postgres-nio wants an id per connection, for its logs.
    private static let nextID = Atomic<Int>(0)

    /// A typed error for what postgres-nio threw.
    func describe(_ error: any Error, doing what: String) -> any Error {
        if error is CancellationError || error is MultiprocessingError { return error }
        guard let psql = error as? PSQLError else {
            return MultiprocessingError(.databaseUnavailable, "\(what): \(error)")
        }
        let state = psql.serverInfo?[.sqlState] ?? ""
        let message = psql.serverInfo?[.message] ?? ""
        switch state {
        case "28P01", "28000":
            return MultiprocessingError(
                .databaseRefused,
                "\(what): the server refused user \(configuration.username): \(message); check the user name and "
                    + "password")
        case "3D000":
            return MultiprocessingError(
                .databaseRefused, "\(what): \(message); create the database or name another in the URL")
        case "3F000", "42P01":
            return MultiprocessingError(
                .schemaMismatch,
                "\(what): the cluster schema \(schema) is missing (\(message)); let a node or pool create it "
                    + "(createsSchema) or name the right schema")
        case "42501":
            return MultiprocessingError(
                .databaseRefused,
                "\(what): user \(configuration.username) lacks a privilege: \(message); grant CREATE on the "
                    + "database to let it create the schema \(schema), or create the schema with another user and "
                    + "grant this one USAGE on it and SELECT, INSERT, UPDATE, DELETE on its tables")
        case let state where state.hasPrefix("08") || state.hasPrefix("57P"):
            return MultiprocessingError(.databaseUnavailable, "\(what): the server went away: \(message)")
        case "":
            break
        default:
            return MultiprocessingError(.databaseUnavailable, "\(what): \(message) (SQLSTATE \(state))")
        }
        if psql.code == .authMechanismRequiresPassword {
            return MultiprocessingError(
                .databaseRefused, "\(what): the server asks for a password and the URL gives none")
        }
        if psql.code == .sslUnsupported {
            return MultiprocessingError(.databaseRefused, "\(what): the server does not offer TLS; use sslmode=disable")
        }
        let cause = psql.underlying.map { "\($0)" } ?? "\(psql.code)"
        return MultiprocessingError(
            .databaseUnavailable, "\(what): \(cause); is PostgreSQL running there, and is the host and port right?")
    }

    /// Whether a failed statement is worth retrying on a new connection.
    static func isConnectionLoss(_ error: any Error) -> Bool {
        if let error = error as? MultiprocessingError { return error.code == .databaseUnavailable }
        guard let psql = error as? PSQLError else { return false }
        switch psql.code {
        case .serverClosedConnection, .clientClosedConnection, .connectionError, .uncleanShutdown: return true
        case .server:
            let state = psql.serverInfo?[.sqlState] ?? ""
            return state.hasPrefix("08") || state.hasPrefix("57P")
        default: return false
        }
    }
}

extension Duration {
    var milliseconds: Int64 {
        let (seconds, attoseconds) = components
        return seconds * 1000 + attoseconds / 1_000_000_000_000_000
    }
}
