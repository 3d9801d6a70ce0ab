#if canImport(Glibc)
    import Glibc
#endif
import ClusterTestWork
import Foundation
import Logging
import Multiprocessing
import MultiprocessingCluster
import PostgresNIO
import Testing

extension ClusterTests {
    @Suite("Cluster pool on PostgreSQL")
    struct ClusterPoolTests {
        @Test(
            "map, mapUnordered, submit and apply run across two and three nodes, each result once",
            .timeLimit(.minutes(3)), arguments: [2, 3])
        func mapSubmitApplyAcrossNodes(nodeCount: Int) async throws {
            try await withTestCluster { cluster in
                var nodes: [Int32] = []
                for _ in 0..<nodeCount { nodes.append(try await cluster.startNode(workers: 2).pid) }
                try await withClusterPool(database: cluster.database) { pool in
                    #expect(pool.workerCount == 2 * nodeCount)
                    let squares = try await pool.map(Square.self, 0..<5000).collect()
                    #expect(squares == (0..<5000).map { $0 * $0 })

                    // Slow items one per chunk: every node takes some.
                    let items = (0..<60).map { SlowItem(value: $0, milliseconds: 30) }
                    let ran = try await pool.map(Slow.self, items, chunkSize: 1).collect()
                    #expect(ran.map(\.value) == Array(0..<60))
                    #expect(Set(ran.map(\.node)) == Set(nodes))

                    var unordered: [Int] = []
                    for try await value in pool.mapUnordered(Square.self, 0..<300, chunkSize: 7) { unordered.append(value) }
                    #expect(unordered.sorted() == (0..<300).map { $0 * $0 })

                    let handle = try pool.submit(AddTask(a: 2, b: 3))
                    #expect(try await pool.apply(AddTask(a: 40, b: 2)).value == 42)
                    #expect(try await handle.value.value == 5)
                    let tasks = try await pool.map(tasks: (0..<20).map { AddTask(a: $0, b: 1) }).collect()
                    #expect(tasks.map(\.value) == Array(1...20))
                }
                // Everything consumed is deleted: no rows left behind.
                #expect(try await cluster.count("SELECT count(*) FROM \(cluster.schema).task") == 0)
                #expect(try await cluster.count("SELECT count(*) FROM \(cluster.schema).result") == 0)
                #expect(try await cluster.count("SELECT count(*) FROM \(cluster.schema).pool") == 0)
            }
        }

        @Test(
            "a soak of 20,000 chunks: the queue's tables stay small while it runs and empty after",
            .timeLimit(.minutes(5)))
        func soakKeepsTablesSmall() async throws {
            try await withTestCluster { cluster in
                try await cluster.startNode(workers: 1)
                try await cluster.startNode(workers: 1)
                let tables = "pg_total_relation_size('\(cluster.schema).task') + pg_total_relation_size('\(cluster.schema).result')"
                try await withClusterPool(database: cluster.database) { pool in
                    let sizes = Task {
                        var largest = 0
                        while !Task.isCancelled {
                            largest = max(largest, try await cluster.count("SELECT \(tables)"))
                            try? await Task.sleep(for: .milliseconds(200))
                        }
                        return largest
                    }
                    var count = 0
                    // One item per chunk: every item is a claim, a completion and a read.
                    for try await _ in pool.mapUnordered(Square.self, 0..<20_000, chunkSize: 1) { count += 1 }
                    sizes.cancel()
                    #expect(count == 20_000)
                    // Dead row versions are vacuumed as the soak goes: without it
                    // the tables grow by about 330 KiB per thousand chunks (6.5 MiB here).
                    let largest = try await sizes.value
                    var holders = ""
                    if largest >= 3 << 20 {
                        // What holds back the vacuum: sessions with an old snapshot.
                        let rows = try await cluster.query(
                            """
                            SELECT pid || ' ' || coalesce(client_addr::text, 'local') || ' ' || (now() - xact_start)::text
                                   || ': ' || query
                            FROM pg_stat_activity WHERE backend_xmin IS NOT NULL AND pid <> pg_backend_pid()
                            """)
                        holders = try rows.map { try $0.decode(String.self) }.joined(separator: "; ")
                    }
                    #expect(largest < 3 << 20, "the tables reached \(largest >> 10) KiB; snapshots held: \(holders)")
                }
                #expect(try await cluster.count("SELECT count(*) FROM \(cluster.schema).task") == 0)
                #expect(try await cluster.count("SELECT count(*) FROM \(cluster.schema).result") == 0)
            }
        }

        @Test("a wrong password, a server that is down, a bad URL and a missing schema give typed errors")
        func badDatabasesGiveTypedErrors() async throws {
            let url = serverURL!
            let wrongPassword = url.replacingOccurrences(of: ":cluster-test-password@", with: ":wrong@")
            await #expect(throws: MultiprocessingError.self) {
                _ = try await ClusterPool(database: try ClusterDatabase(url: wrongPassword))
            }
            do {
                _ = try await ClusterPool(database: try ClusterDatabase(url: wrongPassword))
            } catch let error as MultiprocessingError {
                #expect(error.code == .databaseRefused)
                #expect(error.message.contains("password"))
            }

            // A port where nothing listens: bind one and close it.
            let socket = Glibc.socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            _ = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(socket, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
            }
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            _ = withUnsafeMutablePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(socket, $0, &length) }
            }
            let freePort = Int(UInt16(bigEndian: address.sin_port))
            close(socket)
            do {
                _ = try await ClusterPool(
                    database: try ClusterDatabase(url: "postgres://postgres:x@127.0.0.1:\(freePort)/postgres"))
                Issue.record("a pool connected to a port where no server listens")
            } catch let error as MultiprocessingError {
                #expect(error.code == .databaseUnavailable)
                #expect(error.message.contains("127.0.0.1:\(freePort)"))
            }

            for bad in ["not a url", "http://host/db", "postgres://host/db", "postgres://user@/db"] {
                #expect(throws: MultiprocessingError.self, "\(bad)") { _ = try ClusterDatabase(url: bad) }
            }
            #expect(throws: MultiprocessingError.self) { _ = try ClusterDatabase(url: url + "?schema=Bad-Name") }

            var missing = try ClusterDatabase(url: url + "?schema=never_created_\(getpid())")
            missing.createsSchema = false
            do {
                _ = try await ClusterPool(database: missing)
                Issue.record("a pool started on a schema that does not exist")
            } catch let error as MultiprocessingError {
                #expect(error.code == .schemaMismatch)
                #expect(error.message.contains("never_created_"))
            }

            let noDatabase = url.replacingOccurrences(of: "/postgres", with: "/no_such_database")
            do {
                _ = try await ClusterPool(database: try ClusterDatabase(url: noDatabase))
                Issue.record("a pool started on a database that does not exist")
            } catch let error as MultiprocessingError {
                #expect(error.code == .databaseRefused)
            }

            // A user who may not create the cluster's schema.
            let logger = Logger(label: "test")
            let admin = try await PostgresConnection.connect(
                configuration: try ClusterDatabase(url: url).configuration, id: 9, logger: logger)
            let role = "limited_\(getpid())"
            try await admin.query(PostgresQuery(unsafeSQL: "CREATE ROLE \(role) LOGIN PASSWORD 'limited-password'"), logger: logger)
            let limited = url.replacingOccurrences(of: "//postgres:cluster-test-password@", with: "//\(role):limited-password@")
            do {
                _ = try await ClusterPool(database: try ClusterDatabase(url: limited + "?schema=\(role)"))
                Issue.record("a user without CREATE on the database created the cluster's schema")
            } catch let error as MultiprocessingError {
                #expect(error.code == .databaseRefused, "\(error)")
                #expect(error.message.contains("lacks a privilege"), "\(error)")
                #expect(error.message.contains(role), "\(error)")
            }
            try await admin.query(PostgresQuery(unsafeSQL: "DROP ROLE \(role)"), logger: logger)
            try await admin.close()
        }
    }
}
