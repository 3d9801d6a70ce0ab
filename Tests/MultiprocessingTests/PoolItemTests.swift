#if canImport(Glibc)
    import Glibc
#endif
import Foundation
import Logging
import Synchronization
import Testing
@testable import Multiprocessing

extension ProcessSuites {
    @Suite("Pools, item by item", .serialized, .timeLimit(.minutes(3)))
    struct PoolItemTests {
        static let methods: [StartMethod] = [.forkserver, .spawn]

        @Test("a task that hangs on an idle pool fails at its timeout: submit, apply and map", arguments: methods)
        func timeoutOnIdlePool(method: StartMethod) async throws {
            let options = PoolOptions(
                startMethod: method, taskTimeout: .milliseconds(300), gracePeriod: .milliseconds(100))
            try await withProcessPool(workers: 1, options: options) { pool in
                for attempt in 0..<3 {
                    let start = ContinuousClock.now
                    let failure: (any Error)?
                    switch attempt {
                    case 0:
                        let handle = try pool.submit(SleepForever())
                        failure = await Result { try await handle.value }.failure
                    case 1:
                        failure = await Result { try await pool.apply(SleepForever()) }.failure
                    default:
                        failure = await Result { try await pool.map(Troublesome.self, [-3]).collect() }.failure
                    }
                    let elapsed = ContinuousClock.now - start
                    #expect((failure as? MultiprocessingError)?.code == .timedOut, "attempt \(attempt)")
                    #expect(elapsed >= .milliseconds(300))
                    #expect(elapsed < .seconds(3), "a 300 ms timeout fired after \(elapsed)")
                }
                // The pool goes on with a fresh worker.
                #expect(try await pool.apply(Square(number: 5)) == 25)
            }
        }

        @Test("a ForkingPool's timeout fires on an idle pool too")
        func timeoutOnIdleForkingPool() async throws {
            let outcome = try await ChildProcess.run(RunIdleForkingPoolTimeout(), startMethod: .spawn)
            #expect(outcome.code == "timedOut")
            #expect(outcome.milliseconds >= 300 && outcome.milliseconds < 3000)
        }

        @Test("one crash or hang fails only its own item under default chunking", arguments: methods)
        func onlyTheItemFails(method: StartMethod) async throws {
            var inputs = Array(0..<300)
            let trouble = [17: -1, 60: -3, 101: -1, 150: -2, 222: -4]
            for (index, way) in trouble { inputs[index] = way }
            let options = PoolOptions(
                startMethod: method, taskTimeout: .milliseconds(500), gracePeriod: .milliseconds(100))
            try await withProcessPool(workers: 2, options: options) { pool in
                var failed: [Int: MultiprocessingError] = [:]
                var succeeded = 0
                for try await (index, result) in pool.map(Troublesome.self, inputs).indexedResults {
                    switch result {
                    case .success(let value):
                        #expect(value == inputs[index])
                        succeeded += 1
                    case .failure(let error):
                        failed[index] = error as? MultiprocessingError
                    }
                }
                #expect(succeeded == 295)
                #expect(Set(failed.keys) == Set(trouble.keys))
                #expect(failed[60]?.code == .timedOut)
                for index in [17, 101, 150, 222] { #expect(failed[index]?.code == .workerDied, "item \(index)") }
                #expect(failed[17]?.terminationStatus == .signaled(.kill))
                #expect(failed[150]?.terminationStatus == .signaled(.abort))
                #expect(failed[222]?.terminationStatus == .exited(3))
                for (index, error) in failed {
                    #expect(error.itemIndex == index)
                    #expect(error.work?.hasSuffix("Troublesome") == true)
                    #expect(error.workerIndex.map { (0..<2).contains($0) } == true)
                    #expect((error.pid ?? 0) > 0)
                    #expect(error.message.contains("item \(index)"), "\(error.message)")
                }
            }
        }

        @Test("a crash in a large chunk fails that item alone; the others of its chunk run again")
        func crashInLargeChunk() async throws {
            var inputs = Array(0..<400)
            inputs[130] = -1
            try await withProcessPool(workers: 2) { pool in
                var failures: [Int] = []
                var values: [Int] = []
                for try await (index, result) in pool.map(Troublesome.self, inputs, chunkSize: 100).indexedResults {
                    switch result {
                    case .success(let value): values.append(value)
                    case .failure: failures.append(index)
                    }
                }
                #expect(failures == [130])
                #expect(values == inputs.filter { $0 != -1 })
            }
        }

        @Test("progress moves item by item inside long chunks")
        func progressInsideChunks() async throws {
            try await withProcessPool(workers: 1) { pool in
                let seen = Mutex<[Int]>([])
                _ = try await pool.map(Troublesome.self, Array(repeating: 1030, count: 20), chunkSize: 20)
                    .reportingProgress { update in seen.withLock { $0.append(update.done) } }
                    .collect()
                let values = seen.withLock { $0 }
                #expect(values.last == 20)
                #expect(values.contains { $0 > 0 && $0 < 20 }, "updates: \(values)")
            }
        }

        @Test("a completion callback has run when the result can be seen")
        func callbackBeforeResult() async throws {
            try await withProcessPool(workers: 2) { pool in
                for attempt in 0..<20 {
                    let ran = Atomic(false)
                    let handle = try pool.submit(Square(number: attempt)) { _ in
                        usleep(20_000)
                        ran.store(true, ordering: .releasing)
                    }
                    #expect(try await handle.value == attempt * attempt)
                    let callbackRan = ran.load(ordering: .acquiring)
                    #expect(callbackRan, "attempt \(attempt)")
                }
            }
        }

        @Test("a lazy map delivers every result read before its input fails, then the error")
        func inputFailure() async throws {
            struct InputBroke: Error {}
            let inputs = AsyncThrowingStream<Int, any Error> { continuation in
                for value in 0..<3 { continuation.yield(value) }
                continuation.finish(throwing: InputBroke())
            }
            try await withProcessPool(workers: 2) { pool in
                var results: [Int] = []
                do {
                    for try await value in pool.map(SquareFunction.self, inputs) { results.append(value) }
                    Issue.record("the map did not throw")
                } catch is InputBroke {
                }
                #expect(results == [0, 1, 4])
            }
        }

        @Test("the map iterator lets each value go once it has handed it out")
        func valuesAreReleased() async throws {
            try await withProcessPool(workers: 1) { pool in
                var iterator = pool.map(MakeTracked.self, 0..<10, chunkSize: 10).makeAsyncIterator()
                let before = trackedAlive.load(ordering: .relaxed)
                for expected in 0..<10 {
                    let value = try await iterator.next()
                    #expect(value?.value == expected)
                    _ = consume value
                    let alive = trackedAlive.load(ordering: .relaxed) - before
                    #expect(alive == 9 - expected, "after item \(expected): \(alive) alive")
                }
                #expect(try await iterator.next() == nil)
            }
        }

        @Test("bad options and chunk sizes are refused with a clear error")
        func validation() async throws {
            for limit in [0, -1] {
                #expect(throws: MultiprocessingError.self) {
                    try ProcessPool(workers: 1, options: PoolOptions(maxTasksPerWorker: limit))
                }
            }
            #expect(throws: MultiprocessingError.self) {
                try ProcessPool(workers: 1, options: PoolOptions(maxWorkerMemory: 0))
            }
            try await withProcessPool(workers: 1) { pool in
                for size in [0, -5] {
                    let error =
                        await Result { try await pool.map(SquareFunction.self, 0..<10, chunkSize: size).collect() }
                        .failure as? MultiprocessingError
                    #expect(error?.code == .invalidArgument)
                    #expect(error?.message.contains("chunkSize") == true)
                }
            }
        }

        @Test("shared values and queues travel inside pool tasks, inputs and initializers", arguments: methods)
        func sharedObjects(method: StartMethod) async throws {
            let counter = try SharedValue(0)
            let pool = try ProcessPool(
                workers: 2, options: PoolOptions(startMethod: method), initializer: ShareCounter(counter: counter))
            let sum = try await pool.map(AddToWorkerCounter.self, 1...10).collect().reduce(0, +)
            #expect(sum == 55)
            let handles = try (1...5).map { try pool.submit(AddToShared(counter: counter, number: $0 * 100)) }
            for handle in handles { _ = try await handle.value }
            let queue = try ProcessQueue<Int>()
            let put = try await pool.map(PutInQueue.self, (1...20).map { QueuedNumber(queue: queue, number: $0) })
                .collect()
            #expect(put == Array(1...20))
            var received: [Int] = []
            for _ in 0..<20 { received.append(try await queue.get()) }
            #expect(received.sorted() == Array(1...20))
            await pool.terminate()
            // The tasks added 55 and 1500; each worker's initializer 1000.
            let initialized = counter.value - 1555
            #expect(initialized % 1000 == 0 && initialized / 1000 >= 2, "counter \(counter.value)")
        }

        @Test("a ForkingPool works from synchronous code, with shared objects in its inputs, twice in one process")
        func forkingPoolSynchronously() async throws {
            let counter = try SharedValue(0)
            let results = try await ChildProcess.run(RunForkingPoolSynchronously(counter: counter), startMethod: .spawn)
            #expect(results == (1...10).map { $0 + 7 })
            #expect(counter.value == 55)
        }

        @Test("close(cancelPending:) cancels the queued work and lets the running work finish")
        func closeCancellingPending() async throws {
            let pool = try ProcessPool(workers: 1)
            let running = try pool.submit(SleepFor(milliseconds: 300))
            usleep(100_000)
            let queued = try (0..<5).map { _ in try pool.submit(SleepFor(milliseconds: 300)) }
            pool.close(cancelPending: true)
            #expect(try await running.value == 300)
            for handle in queued {
                #expect(await Result { try await handle.value }.failure is CancellationError)
            }
            await pool.join()
            #expect(throws: MultiprocessingError.self) { try pool.submit(Square(number: 1)) }
        }

        @Test("waiting for many: all, the first, the first failure, with a timeout; as they complete")
        func waitingForMany() async throws {
            try await withProcessPool(workers: 2) { pool in
                let slow = try pool.submit(SleepFor(milliseconds: 600))
                let fast = try pool.submit(SleepFor(milliseconds: 10))
                let (firstDone, firstPending) = await waitForCompletion(
                    of: [slow, fast, fast], until: .firstCompleted)
                #expect(firstDone.map(ObjectIdentifier.init) == [ObjectIdentifier(fast)])
                #expect(firstPending.map(ObjectIdentifier.init) == [ObjectIdentifier(slow)])
                let (timedDone, timedPending) = await waitForCompletion(of: [slow], timeout: .milliseconds(50))
                #expect(timedDone.isEmpty && timedPending.count == 1)
                let (allDone, allPending) = await waitForCompletion(of: [slow, fast])
                #expect(allDone.count == 2 && allPending.isEmpty)

                let failing = try pool.submit(FailIfOdd(number: 3))
                let later = try pool.submit(SleepFor(milliseconds: 800))
                let (failDone, _) = await waitForCompletion(of: [later, failing], until: .firstFailure)
                #expect(failDone.count == 1 && failDone[0].didFail)
                _ = try await later.value

                let handles = try [300, 10, 150].map { try pool.submit(SleepFor(milliseconds: $0)) }
                var order: [Int] = []
                for try await handle in completions(of: handles + [handles[0]]) { order.append(try await handle.value) }
                #expect(order.sorted() == [10, 150, 300])
                #expect(order.first == 10)

                let stuck = try pool.submit(SleepFor(milliseconds: 2000))
                do {
                    for try await _ in completions(of: [stuck], timeout: .milliseconds(100)) {}
                    Issue.record("no timeout")
                } catch let error as MultiprocessingError {
                    #expect(error.code == .timedOut)
                    #expect(error.message.contains("1 (of 1)"))
                }
                stuck.cancel()
            }
            // Child processes are waitable too. (Far apart: on a loaded
            // machine 200 ms against 10 ms was seen to end both before the wait.)
            let children = try [Sleep(milliseconds: 1500), Sleep(milliseconds: 10)].map { try ChildProcess($0) }
            for child in children { try child.start() }
            let (done, pending) = await waitForCompletion(of: children, until: .firstCompleted)
            #expect(done.map(ObjectIdentifier.init) == [ObjectIdentifier(children[1])])
            #expect(pending.count == 1)
            _ = await waitForCompletion(of: children)
            #expect(children.allSatisfy { $0.isDone && !$0.didFail })
        }

        @Test("thousands of submits do not grow the heap, and a dropped pool is freed")
        func noLeakPerSubmit() async throws {
            let payload = [UInt8](repeating: 7, count: 100_000)
            weak var engine: PoolEngine?
            do {
                let pool = try ProcessPool(workers: 2)
                engine = pool.engine
                for _ in 0..<200 { _ = try await pool.apply(EchoLength(bytes: payload)) }
                let before = heapBytesInUse()
                for _ in 0..<3000 { _ = try await pool.apply(EchoLength(bytes: payload)) }
                let grown = heapBytesInUse() - before
                #expect(grown < 8 << 20, "the heap grew by \(grown) bytes over 3000 applies of 100 kB")
                pool.close()
                await pool.join()
            }
            #expect(eventually(within: .seconds(5)) { engine == nil }, "the engine outlived its pool")
        }

        @Test("a pool says in its log when it replaces a dead worker and stops an item at its timeout")
        func logging() async throws {
            let records = LogRecords()
            let logger = Logger(label: "test.pool") { _ in records }
            let options = PoolOptions(taskTimeout: .milliseconds(300), gracePeriod: .milliseconds(50), logger: logger)
            try await withProcessPool(workers: 1, options: options) { pool in
                _ = await Result { try await pool.map(Troublesome.self, [1, -1, 2]).collect() }
                _ = await Result { try await pool.apply(SleepForever()) }
            }
            let seen = records.all
            #expect(seen.contains { $0.level == .warning && $0.message.contains("died") && $0.metadata["pid"] != nil })
            #expect(seen.contains { $0.level == .warning && $0.message.contains("timeout") })
            #expect(!seen.contains { $0.level == .error })
        }

        @Test("a program that returns from main with work pending finishes it; a submit during exit is refused")
        func workAtExit() throws {
            let directory = FileManager.default.temporaryDirectory.appendingPathComponent("pool-exit-\(getpid())")
            try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
            defer { try? FileManager.default.removeItem(at: directory) }
            let marker = directory.appendingPathComponent("done").path
            let run = try runTestProgram(["pool-exit-pending", marker])
            #expect(run.status == 0, "\(run.output)")
            #expect(FileManager.default.fileExists(atPath: marker), "the pending task did not run: \(run.output)")
            let refused = try runTestProgram(["pool-submit-during-exit"])
            #expect(refused.status == 0, "\(refused.output)")
            #expect(refused.output.contains("refused: the program is exiting"), "\(refused.output)")
        }
    }
}

/// Returns the length of what it was given.
struct EchoLength: ProcessTask {
    var bytes: [UInt8]
    func run() -> Int { bytes.count }
}

/// In a spawned child: how long a hanging item of a ForkingPool took to time out.
struct RunIdleForkingPoolTimeout: ProcessTask {
    struct Outcome: Codable, Sendable {
        var code: String
        var milliseconds: Int
    }

    func run() async throws -> Outcome {
        let pool = try ForkingPool(
            workers: 1, options: PoolOptions(taskTimeout: .milliseconds(300), gracePeriod: .milliseconds(100)),
            allowingOtherThreads: forksAllowOtherThreads
        ) { (input: Int) -> Int in
            while input < 0 { sleep(1) }
            return input
        }
        let start = ContinuousClock.now
        let error = await Result { try await pool.apply(-1) }.failure as? MultiprocessingError
        let elapsed = ContinuousClock.now - start
        await pool.terminate()
        return Outcome(code: error?.code.description ?? "none", milliseconds: Int(elapsed / .milliseconds(1)))
    }
}

/// Collects log records.
final class LogRecords: LogHandler, @unchecked Sendable {
    // @unchecked: `records` is guarded by `lock`; the handler's own properties are set once.
    struct Record {
        var level: Logger.Level
        var message: String
        var metadata: Logger.Metadata
    }

    private let lock = NSLock()
    private var records: [Record] = []
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        lock.withLock {
            records.append(Record(level: event.level, message: "\(event.message)", metadata: event.metadata ?? [:]))
        }
    }

    var all: [Record] { lock.withLock { records } }
}

extension Result {
    /// The error, for a failure.
    var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }

    init(catching body: () async throws(Failure) -> Success) async {
        do {
            self = .success(try await body())
        } catch {
            self = .failure(error)
        }
    }
}
