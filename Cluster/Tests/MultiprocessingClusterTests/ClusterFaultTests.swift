#if canImport(Glibc)
    import Glibc
#endif
import ClusterTestWork
import Foundation
import Multiprocessing
import MultiprocessingCluster
import PostgresNIO
import Testing

extension ClusterTests {
    @Suite("Cluster faults: dead nodes, re-runs, cancellation, timeouts, poison, restarts")
    struct ClusterFaultTests {
        // How fast is measured by the benchmark X.cluster.recovery.kill (about
        // 1 s); this test bounds it loosely, against a rescue of minutes.
        @Test("a node SIGKILLed mid-map: its chunks run elsewhere within seconds, every item once", .timeLimit(.minutes(3)))
        func sigkilledNodeChunksRunElsewhere() async throws {
            try await withTestCluster { cluster in
                let victim = try await cluster.startNode(workers: 2)
                let survivor = try await cluster.startNode(workers: 2)
                let victimID = try #require(try await cluster.nodeID(pid: victim.pid))
                try await withClusterPool(database: cluster.database) { pool in
                    let items = (0..<40).map { SlowItem(value: $0, milliseconds: 300) }
                    var seen: [Int] = []
                    var recovery: Duration?
                    for try await ran in pool.map(Slow.self, items, chunkSize: 1) {
                        seen.append(ran.value)
                        if seen.count == 4 {
                            // The victim holds chunks now (two running, one prefetched).
                            let held = try await cluster.count(
                                "SELECT count(*) FROM \(cluster.schema).task WHERE node_id = \(victimID)")
                            #expect(held > 0)
                            victim.kill(SIGKILL)
                            let killed = ContinuousClock.now
                            try await eventually("the victim's chunks are handed back", within: .seconds(10)) {
                                try await cluster.count(
                                    "SELECT count(*) FROM \(cluster.schema).task WHERE node_id = \(victimID)") == 0
                            }
                            recovery = ContinuousClock.now - killed
                        }
                    }
                    #expect(seen == Array(0..<40))
                    let recovered = try #require(recovery)
                    #expect(recovered < .seconds(10), "the victim's chunks were handed back after \(recovered)")
                }
                #expect(survivor.isRunning)
            }
        }

        // Node ids count from 1 in every schema: the leases must still be each cluster's own.
        @Test(
            "two clusters in one database keep apart: a killed node is found by its free lease, the other cluster's node of its id runs on",
            .timeLimit(.minutes(2)))
        func twoClustersInOneDatabase() async throws {
            try await withTestCluster { first in
                try await withTestCluster { second in
                    let victim = try await first.startNode(workers: 1)
                    let namesake = try await second.startNode(workers: 1)
                    _ = try await first.startNode(workers: 1)
                    let victimID = try #require(try await first.nodeID(pid: victim.pid))
                    let namesakeID = try await second.nodeID(pid: namesake.pid)
                    #expect(namesakeID == victimID)
                    try await withClusterPool(database: first.database) { one in
                        try await withClusterPool(database: second.database) { two in
                            async let a = one.map(Square.self, 0..<500).collect()
                            async let b = two.map(Square.self, 0..<500).collect()
                            let (squares, others) = try await (a, b)
                            #expect(squares == (0..<500).map { $0 * $0 })
                            #expect(others == squares)
                        }
                    }
                    // Its lease is free at once: it is reaped after a second, not
                    // after the five that a silent heartbeat takes.
                    victim.kill(SIGKILL)
                    let killed = ContinuousClock.now
                    try await eventually("the killed node is reaped", within: .seconds(20)) {
                        try await first.nodeID(pid: victim.pid) == nil
                    }
                    let took = ContinuousClock.now - killed
                    #expect(took < .seconds(4), "the killed node was reaped after \(took)")
                    let stillThere = try await second.nodeID(pid: namesake.pid)
                    #expect(stillThere == victimID)
                }
            }
        }

        @Test("a node frozen past its lease is fenced: its late results are dropped, every item delivered once",
              .timeLimit(.minutes(3)))
        func frozenNodeResultsAreDroppedAndEachItemDeliveredOnce() async throws {
            try await withTestCluster { cluster in
                let frozen = try await cluster.startNode(workers: 2)
                _ = try await cluster.startNode(workers: 2)
                try await withClusterPool(database: cluster.database) { pool in
                    let items = (0..<60).map { SlowItem(value: $0, milliseconds: 150) }
                    var counts: [Int: Int] = [:]
                    var stoppedOnce = false
                    for try await ran in pool.mapUnordered(Slow.self, items, chunkSize: 1) {
                        counts[ran.value, default: 0] += 1
                        if !stoppedOnce && counts.count == 5 {
                            stoppedOnce = true
                            // Frozen with chunks in hand; its lock stays held, its heartbeat stops.
                            frozen.kill(SIGSTOP)
                            let frozenID = try #require(try await cluster.nodeID(pid: frozen.pid))
                            try await eventually("the frozen node is fenced", within: .seconds(20)) {
                                try await cluster.nodeID(pid: frozen.pid) != frozenID
                            }
                            frozen.kill(SIGCONT)
                        }
                    }
                    #expect(counts.count == 60)
                    #expect(counts.values.allSatisfy { $0 == 1 }, "results seen more than once: \(counts.filter { $0.value > 1 })")
                }
                #expect(try await cluster.count("SELECT count(*) FROM \(cluster.schema).result") == 0)
            }
        }

        @Test("cancelling an apply stops the worker running it on its node", .timeLimit(.minutes(2)))
        func cancellingAnApplyStopsItsWorker() async throws {
            try await withTestCluster { cluster in
                let node = try await cluster.startNode(workers: 1)
                try await withClusterPool(database: cluster.database) { pool in
                    let waiting = Task { try await pool.apply(SleepTask(milliseconds: 60_000)) }
                    try await eventually("the node claims the task", within: .seconds(20)) {
                        try await cluster.count("SELECT count(*) FROM \(cluster.schema).task WHERE node_id IS NOT NULL") == 1
                    }
                    let cancelled = ContinuousClock.now
                    waiting.cancel()
                    await #expect(throws: CancellationError.self) { try await waiting.value }
                    #expect(try await cluster.count("SELECT count(*) FROM \(cluster.schema).task") == 0)
                    // The node's only worker was stopped: the next task runs at once, not after a minute.
                    #expect(try await pool.apply(SleepTask(milliseconds: 1)) == node.pid)
                    #expect(ContinuousClock.now - cancelled < .seconds(30))

                    // A map cancelled by its task: its chunks leave the database.
                    let map = Task {
                        try await pool.map(Slow.self, (0..<100).map { SlowItem(value: $0, milliseconds: 200) }, chunkSize: 1)
                            .collect()
                    }
                    try await eventually("the map's chunks are claimed", within: .seconds(20)) {
                        try await cluster.count("SELECT count(*) FROM \(cluster.schema).task WHERE node_id IS NOT NULL") > 0
                    }
                    map.cancel()
                    await #expect(throws: CancellationError.self) { _ = try await map.value }
                    try await eventually("the map's chunks are gone", within: .seconds(10)) {
                        try await cluster.count("SELECT count(*) FROM \(cluster.schema).task") == 0
                    }
                }
            }
        }

        @Test("a node's task timeout stops an item that runs too long; the others succeed", .timeLimit(.minutes(2)))
        func taskTimeoutStopsOneItem() async throws {
            try await withTestCluster { cluster in
                try await cluster.startNode(workers: 2, extra: ["--cluster-task-timeout", "1"])
                try await withClusterPool(database: cluster.database) { pool in
                    var outcomes: [Result<Int, any Error>] = []
                    for try await result in pool.map(HangOnNegative.self, [1, -1, 2, 3], chunkSize: 1).results {
                        outcomes.append(result)
                    }
                    #expect(outcomes.count == 4)
                    #expect((try? outcomes[0].get()) == 1)
                    #expect((try? outcomes[2].get()) == 2)
                    #expect((try? outcomes[3].get()) == 3)
                    guard case .failure(let error as MultiprocessingError) = outcomes[1] else {
                        Issue.record("the hanging item did not fail with a MultiprocessingError: \(outcomes[1])")
                        return
                    }
                    #expect(error.code == .timedOut)
                }
            }
        }

        @Test("a chunk that kills its node three times fails as poison with .nodeDied", .timeLimit(.minutes(3)))
        func poisonChunkFailsAfterThreeDeaths() async throws {
            try await withTestCluster { cluster in
                try await withClusterPool(database: cluster.database) { pool in
                    var node = try await cluster.startNode(workers: 1)
                    let map = Task {
                        var outcomes: [Result<Int, any Error>] = []
                        for try await result in pool.map(KillNodeOnMinusOne.self, [1, -1, 2], chunkSize: 1).results {
                            outcomes.append(result)
                        }
                        return outcomes
                    }
                    // Each node that dies is replaced, so a live node reaps the dead one.
                    var deaths = 0
                    let deadline = ContinuousClock.now + .seconds(100)
                    while deaths < 3 && ContinuousClock.now < deadline {
                        if await node.wait(within: .milliseconds(200)) {
                            deaths += 1
                            node = try await cluster.startNode(workers: 1)
                        }
                    }
                    let outcomes = try await map.value
                    #expect(deaths == 3)
                    #expect(outcomes.count == 3)
                    // A chunk the dying node held beside the poison (its prefetch, or
                    // one whose result it had not written yet) may share its fate.
                    for (index, expected) in [(0, 1), (2, 2)] {
                        switch outcomes[index] {
                        case .success(let value): #expect(value == expected)
                        case .failure(let error): #expect((error as? MultiprocessingError)?.code == .nodeDied)
                        }
                    }
                    guard case .failure(let error as MultiprocessingError) = outcomes[1] else {
                        Issue.record("the poison item did not fail with a MultiprocessingError: \(outcomes[1])")
                        return
                    }
                    #expect(error.code == .nodeDied)
                    #expect(error.message.contains("3 times"))
                }
            }
        }

        @Test("the database restarted mid-map: the map goes on, every item once", .timeLimit(.minutes(3)),
              .enabled(if: ProcessInfo.processInfo.environment["MULTIPROCESSING_TEST_PG_RESTART"] != nil))
        func databaseRestartMidMap() async throws {
            let restart = ProcessInfo.processInfo.environment["MULTIPROCESSING_TEST_PG_RESTART"]!
            try await withTestCluster { cluster in
                try await cluster.startNode(workers: 2)
                try await cluster.startNode(workers: 2)
                try await withClusterPool(database: cluster.database) { pool in
                    let items = (0..<80).map { SlowItem(value: $0, milliseconds: 50) }
                    var counts: [Int: Int] = [:]
                    var restarted = false
                    for try await ran in pool.mapUnordered(Slow.self, items, chunkSize: 1) {
                        counts[ran.value, default: 0] += 1
                        if !restarted && counts.count == 10 {
                            restarted = true
                            #expect(try runScript(restart, ["1"]) == 0)
                        }
                    }
                    #expect(restarted)
                    #expect(counts.count == 80)
                    #expect(counts.values.allSatisfy { $0 == 1 })
                }
            }
        }

        @Test("chunks the database lost after acknowledging them are inserted again once the driver reconnects",
              .timeLimit(.minutes(2)))
        func lostChunksAreInsertedAgain() async throws {
            try await withTestCluster { cluster in
                try await withClusterPool(database: cluster.database) { pool in
                    // No node yet: the chunks wait in the task table.
                    let map = Task { try await pool.map(Square.self, 0..<20, chunkSize: 1).collect() }
                    try await eventually("the driver inserts chunks", within: .seconds(30)) {
                        guard try await cluster.schemaExists() else { return false }
                        return try await cluster.count("SELECT count(*) FROM \(cluster.schema).task") > 0
                    }
                    // What a server that crashes with unflushed commits does: the
                    // rows it had acknowledged are gone, and so are the sessions.
                    _ = try await cluster.query(PostgresQuery(unsafeSQL: "DELETE FROM \(cluster.schema).task"))
                    _ = try await cluster.query(
                        """
                        SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                        WHERE pid <> pg_backend_pid() AND backend_type = 'client backend' AND datname = current_database()
                        """)
                    try await cluster.startNode(workers: 2)
                    #expect(try await map.value == (0..<20).map { $0 * $0 })
                }
            }
        }

        @Test("a node cut off by a silent partition is fenced, its chunks run elsewhere, it joins again",
              .timeLimit(.minutes(3)),
              .enabled(if: ProcessInfo.processInfo.environment["MULTIPROCESSING_TEST_NETNS"] != nil,
                       "needs a network namespace: run as root under Cluster/scripts/with-postgres.sh"))
        func partitionedNode() async throws {
            let environment = ProcessInfo.processInfo.environment
            let partition = environment["MULTIPROCESSING_TEST_PARTITION"]!
            func link(_ state: String) throws {
                #expect(try runScript(partition, [state]) == 0)
            }
            try await withTestCluster { cluster in
                try await cluster.startNode(workers: 1)
                let cut = try await cluster.startNode(
                    workers: 2, namespace: environment["MULTIPROCESSING_TEST_NETNS"]!,
                    serverURL: environment["MULTIPROCESSING_TEST_NETNS_URL"]!)
                defer { try? link("up") }
                let items = (0..<40).map { SlowItem(value: $0, milliseconds: 300) }
                var counts: [Int: Int] = [:]
                var cutNode: Int64?
                try await withClusterPool(database: cluster.database) { pool in
                    for try await ran in pool.mapUnordered(Slow.self, items, chunkSize: 1) {
                        counts[ran.value, default: 0] += 1
                        guard cutNode == nil && ran.node == cut.pid else { continue }
                        // The node has run an item: it holds more now (it claims
                        // a chunk per idle worker and one ahead).
                        let id = try #require(try await cluster.nodeID(pid: cut.pid))
                        cutNode = id
                        try link("down")
                        try await eventually("the cut-off node is fenced and its chunks handed back", within: .seconds(30)) {
                            let nodes = try await cluster.count("SELECT count(*) FROM \(cluster.schema).node WHERE id = \(id)")
                            let held = try await cluster.count(
                                "SELECT count(*) FROM \(cluster.schema).task WHERE node_id = \(id)")
                            return nodes == 0 && held == 0
                        }
                        try link("up")
                    }
                }
                #expect(cutNode != nil)
                #expect(counts.count == items.count)
                #expect(counts.values.allSatisfy { $0 == 1 })
                // Back on the network, the node finds its row gone and joins again as a new node.
                try await eventually("the node joins again", within: .seconds(60)) {
                    guard let id = try await cluster.nodeID(pid: cut.pid) else { return false }
                    return id != cutNode
                }
                #expect(cut.isRunning)
            }
        }

        @Test("a driver SIGKILLed mid-map: its pool and chunks are dropped, nodes stop its work", .timeLimit(.minutes(2)))
        func killedDriverIsDropped() async throws {
            try await withTestCluster { cluster in
                try await cluster.startNode(workers: 2)
                let driver = try NodeProcess(arguments: ["drive", cluster.url, "50", "500"])
                defer {
                    driver.kill(SIGKILL)
                    driver.wait()
                }
                try await eventually("the driver gets a result", within: .seconds(60)) {
                    driver.output.contains("done 1")
                }
                #expect(try await cluster.count("SELECT count(*) FROM \(cluster.schema).pool") == 1)
                #expect(try await cluster.count("SELECT count(*) FROM \(cluster.schema).task") > 0)
                driver.kill(SIGKILL)
                driver.wait()
                try await eventually("the dead driver's pool and chunks are dropped", within: .seconds(10)) {
                    let pools = try await cluster.count("SELECT count(*) FROM \(cluster.schema).pool")
                    let tasks = try await cluster.count("SELECT count(*) FROM \(cluster.schema).task")
                    let results = try await cluster.count("SELECT count(*) FROM \(cluster.schema).result")
                    return pools == 0 && tasks == 0 && results == 0
                }
                // The node is free again: a new pool's task runs at once.
                try await withClusterPool(database: cluster.database) { pool in
                    let start = ContinuousClock.now
                    _ = try await pool.apply(SleepTask(milliseconds: 1))
                    #expect(ContinuousClock.now - start < .seconds(10))
                }
            }
        }

        @Test("a node drains on SIGTERM: it finishes its chunks, exits 0, and the map completes elsewhere",
              .timeLimit(.minutes(2)))
        func nodeDrainsOnSigterm() async throws {
            try await withTestCluster { cluster in
                let leaving = try await cluster.startNode(workers: 2)
                _ = try await cluster.startNode(workers: 2)
                try await withClusterPool(database: cluster.database) { pool in
                    let items = (0..<30).map { SlowItem(value: $0, milliseconds: 200) }
                    var seen: [Int] = []
                    for try await ran in pool.map(Slow.self, items, chunkSize: 1) {
                        seen.append(ran.value)
                        if seen.count == 3 { leaving.kill(SIGTERM) }
                    }
                    #expect(seen == Array(0..<30))
                }
                #expect(await leaving.wait(within: .seconds(30)))
                #expect(leaving.terminationStatus == 0)
                #expect(leaving.output.contains("node drained"))
            }
        }
    }
}
