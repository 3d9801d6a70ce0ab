#if canImport(Glibc)
    import Glibc
#endif
import Synchronization
import Testing
@testable import Multiprocessing

extension ProcessSuites {
    @Suite("Process pools", .serialized, .timeLimit(.minutes(3)))
    struct PoolTests {
        static let methods: [StartMethod] = [.forkserver, .spawn]

        @Test("ordered map keeps order; unordered map returns every result", arguments: methods)
        func mapOrder(method: StartMethod) async throws {
            try await withProcessPool(workers: 2, options: PoolOptions(startMethod: method)) { pool in
                let squares = try await pool.map(SquareFunction.self, 0..<5000, chunkSize: 7).collect()
                #expect(squares == (0..<5000).map { $0 * $0 })
                let automatic = try await pool.map(SquareFunction.self, Array(0..<20_000)).collect()
                #expect(automatic == (0..<20_000).map { $0 * $0 })
                var unordered: [Int] = []
                for try await square in pool.mapUnordered(SquareFunction.self, 0..<3000, chunkSize: 10) {
                    unordered.append(square)
                }
                #expect(unordered.sorted() == (0..<3000).map { $0 * $0 })
            }
        }

        @Test("maps of different work running at once on one pool each get their own results")
        func interleavedWork() async throws {
            try await withProcessPool(workers: 2) { pool in
                // Chunks of the two maps alternate on each worker's pipe, so
                // a work message's type changes from one chunk to the next.
                async let squares = pool.map(SquareFunction.self, 0..<3000, chunkSize: 1).collect()
                async let lengths = pool.map(BytesOfLength.self, 0..<3000, chunkSize: 1).collect()
                async let tasks = pool.map(tasks: (0..<500).map { Square(number: $0) }).collect()
                let (squareResults, lengthResults, taskResults) = try await (squares, lengths, tasks)
                #expect(squareResults == (0..<3000).map { $0 * $0 })
                #expect(lengthResults.map(\.count) == Array(0..<3000))
                #expect(
                    lengthResults.enumerated().allSatisfy { index, bytes in bytes.allSatisfy { $0 == index % 251 } })
                #expect(taskResults == (0..<500).map { $0 * $0 })
            }
        }

        @Test("submit, apply and a completion callback")
        func submitAndApply() async throws {
            try await withProcessPool(workers: 2) { pool in
                #expect(try await pool.apply(Square(number: 9)) == 81)
                let called = OneShot<Int>()
                let handle = try pool.submit(Square(number: 5)) { result in
                    called.fulfill((try? result.get()) ?? -1)
                }
                #expect(try await handle.value == 25)
                #expect(await called.wait() == 25)
                #expect(handle.isDone)
                let tasks = try await pool.map(tasks: (0..<50).map { Square(number: $0) }).collect()
                #expect(tasks == (0..<50).map { $0 * $0 })
            }
        }

        @Test("an error thrown by a task fails that task only")
        func errorsStayWithTheirItem() async throws {
            try await withProcessPool(workers: 2) { pool in
                var results: [Result<Int, any Error>] = []
                for try await result in pool.map(RejectOdd.self, 0..<10, chunkSize: 3).results {
                    results.append(result)
                }
                #expect(results.count == 10)
                for (index, result) in results.enumerated() {
                    if index % 2 == 0 {
                        #expect((try? result.get()) == index)
                    } else {
                        #expect(throws: OddInput(value: index)) { try result.get() }
                    }
                }
                await #expect(throws: TaskFailure(code: 42, reason: "thrown in the child")) {
                    try await pool.apply(ThrowsCodable())
                }
            }
        }

        @Test("a worker killed mid-task fails only that task, and the next 100 succeed", arguments: methods)
        func workerDeathFailsOneTask(method: StartMethod) async throws {
            try await withProcessPool(workers: 2, options: PoolOptions(startMethod: method)) { pool in
                let inputs = Array(0..<50) + [-1] + Array(50..<150)
                var results: [Result<Int, any Error>] = []
                for try await result in pool.map(DieOnMinusOne.self, inputs, chunkSize: 1).results {
                    results.append(result)
                }
                #expect(results.count == inputs.count)
                let error = #expect(throws: MultiprocessingError.self) { try results[50].get() }
                #expect(error?.code == .workerDied)
                #expect(error?.message.contains("SIGKILL") == true)
                #expect(error?.message.contains("DieOnMinusOne") == true)
                let others = results.enumerated().filter { $0.offset != 50 }
                #expect(others.allSatisfy { (try? $0.element.get()) == inputs[$0.offset] })
                #expect(pool.statistics.map(\.restarts).reduce(0, +) == 1)
                // A worker crash in a single task, too.
                await #expect(throws: MultiprocessingError.self) { try await pool.apply(Crash(way: .segfault)) }
                #expect(try await pool.apply(Square(number: 3)) == 9)
            }
        }

        @Test("results of every size arrive whole and in order, also just before a worker dies", arguments: methods)
        func resultsOfEverySize(method: StartMethod) async throws {
            // Small results travel in the worker's shared ring, large ones (every
            // 7th here) on its pipe; the pool must keep one order across both.
            let lengths = (0..<150).map { $0 % 7 == 0 ? 300_000 + $0 : $0 * 100 }
            try await withProcessPool(workers: 2, options: PoolOptions(startMethod: method)) { pool in
                for chunkSize in [1, 5] {
                    let results = try await pool.map(BytesOfLength.self, lengths, chunkSize: chunkSize).collect()
                    #expect(results.map(\.count) == lengths)
                    #expect(results.map { $0.last.map(Int.init) } == lengths.map { $0 == 0 ? nil : $0 % 251 })
                }
                // A large result sent just before its worker is killed still counts.
                let inputs = [500_000, -1, 60_000, 3]
                var outcomes: [Result<[UInt8], any Error>] = []
                for try await result in pool.map(BytesOfLength.self, inputs, chunkSize: 1).results {
                    outcomes.append(result)
                }
                #expect((try? outcomes[0].get())?.count == 500_000)
                #expect((try? outcomes[1].get()) == nil)
                #expect((try? outcomes[2].get())?.count == 60_000)
                #expect((try? outcomes[3].get()) == [3, 3, 3])
            }
        }

        @Test("a task spinning forever is killed within its timeout plus the grace period")
        func timeoutKills() async throws {
            let options = PoolOptions(taskTimeout: .milliseconds(300), gracePeriod: .milliseconds(200))
            try await withProcessPool(workers: 2, options: options) { pool in
                let start = ContinuousClock.now
                var results: [Result<Int, any Error>] = []
                for try await result in pool.map(SpinOnNegative.self, [1, -1, 2, 3], chunkSize: 1).results {
                    results.append(result)
                }
                let elapsed = ContinuousClock.now - start
                #expect(elapsed < .seconds(3))
                let error = #expect(throws: MultiprocessingError.self) { try results[1].get() }
                #expect(error?.code == .timedOut)
                #expect(results.compactMap { try? $0.get() } == [1, 2, 3])
                // The pool goes on with a replacement worker.
                #expect(try await pool.map(SquareFunction.self, 0..<100).collect().count == 100)
            }
        }

        @Test("cancelling a map kills the workers running it and leaves no process behind")
        func cancellingMap() async throws {
            var pids: [Int32] = []
            try await withProcessPool(workers: 2) { pool in
                pids = pool.statistics.compactMap(\.pid)
                let consumer = Task {
                    var count = 0
                    for try await _ in pool.map(SleepThenPID.self, Array(repeating: 60_000, count: 10), chunkSize: 1) {
                        count += 1
                    }
                    return count
                }
                try await Task.sleep(for: .milliseconds(300))
                let start = ContinuousClock.now
                consumer.cancel()
                await #expect(throws: CancellationError.self) { try await consumer.value }
                #expect(ContinuousClock.now - start < .seconds(5))
                #expect(eventually(within: .seconds(2)) { pids.allSatisfy(isGone) })
                pids += pool.statistics.compactMap(\.pid)
            }
            #expect(eventually(within: .seconds(2)) { pids.allSatisfy(isGone) })
            #expect(zombieChildren().isEmpty)
        }

        @Test("a map of 1 MiB items keeps a bounded number of bytes in flight")
        func largeItemsStayBounded() async throws {
            try await withProcessPool(workers: 2) { pool in
                let baseline = residentMemory()
                var peak = baseline
                var count = 0
                for try await length in pool.mapUnordered(
                    CountBytes.self, LargeItems(count: 1000, size: 1 << 20), chunkSize: 1)
                {
                    #expect(length == 1 << 20)
                    count += 1
                    if count % 10 == 0 { peak = max(peak, residentMemory()) }
                }
                #expect(count == 1000)
                // 1000 MiB of input, at most 64 MiB of it encoded in flight at a
                // time; the rest of the growth (about 190 MiB in all) is freed
                // blocks the allocator keeps. Without a bound it grows past 800 MiB.
                #expect(peak - baseline < 300 << 20, "grew by \((peak - baseline) >> 20) MiB")
            }
        }

        @Test("an endless input with a break after 1000 results finishes")
        func endlessInput() async throws {
            try await withProcessPool(workers: 2) { pool in
                var count = 0
                for try await square in pool.map(SquareFunction.self, 0...) {
                    #expect(square == count * count)
                    count += 1
                    if count == 1000 { break }
                }
                #expect(count == 1000)
            }
        }

        @Test("recycling after N tasks replaces the worker")
        func recycling() async throws {
            let options = PoolOptions(maxTasksPerWorker: 5)
            try await withProcessPool(workers: 1, options: options) { pool in
                let pids = try await pool.map(WorkerPID.self, 0..<20, chunkSize: 1).collect()
                #expect(Set(pids).count == 4)
                #expect(pool.statistics[0].restarts >= 3)
                #expect(pool.statistics[0].tasksDone == 20)
            }
        }

        @Test("the initializer runs once per worker and its state reaches every task")
        func initializer() async throws {
            let pool = try ProcessPool(workers: 2, initializer: SetUpWorker(base: 5))
            let answers = try await pool.map(ReadWorkerState.self, 0..<40, chunkSize: 1).collect()
            // Each worker ran its initializer exactly once: its own counter is 1.
            #expect(answers.allSatisfy { $0[0] == 1005 })
            #expect(Set(answers.map { $0[1] }).isSubset(of: [0, 1]))
            pool.close()
            await pool.join()
        }

        @Test("an initializer that throws is reported clearly")
        func failingInitializer() async throws {
            let pool = try ProcessPool(workers: 2, initializer: FailingSetUp())
            let error = await #expect(throws: MultiprocessingError.self) {
                try await pool.map(SquareFunction.self, 0..<10).collect()
            }
            #expect(error?.code == .initializerFailed)
            #expect(error?.message.contains("OddInput") == true)
            await pool.terminate()
        }

        @Test("close, then join, finishes the submitted work and reaps every worker")
        func closeAndJoin() async throws {
            let pool = try ProcessPool(workers: 3)
            let handles = try (1...3).map { try pool.submit(Square(number: $0)) }
            pool.close()
            await pool.join()
            for (index, handle) in handles.enumerated() { #expect(try await handle.value == (index + 1) * (index + 1)) }
            let error = #expect(throws: MultiprocessingError.self) { try pool.submit(Square(number: 1)) }
            #expect(error?.code == .closed)
            #expect(zombieChildren().isEmpty)
        }

        @Test("10,000 tasks leave no leaked descriptor and no zombie", .timeLimit(.minutes(3)))
        func noLeaks() async throws {
            try await withProcessPool(workers: 1) { _ in }
            let before = openDescriptors()
            try await withProcessPool(workers: 2, options: PoolOptions(maxTasksPerWorker: 2500)) { pool in
                let results = try await pool.map(SquareFunction.self, 0..<10_000, chunkSize: 1).collect()
                #expect(results.count == 10_000)
            }
            #expect(zombieChildren().isEmpty)
            let after = openDescriptors()
            #expect(after == before)
            for fd in Set(after).subtracting(before) {
                var buffer = [CChar](repeating: 0, count: 256)
                let count = readlink("/proc/self/fd/\(fd)", &buffer, 255)
                Issue.record(
                    "leaked fd \(fd): \(String(decoding: buffer[..<max(0, count)].map { UInt8(bitPattern: $0) }, as: UTF8.self))"
                )
            }
        }

        @Test("a forking pool runs a closure over state forked from the parent, and survives a crash")
        func forkingPool() async throws {
            // The test runner has threads, so the pool is made in a spawned, single-threaded child.
            let inputs = Array(0..<20) + [-1] + Array(20..<120)
            let answer = try await ChildProcess.run(RunForkingPool(inputs: inputs), startMethod: .spawn)
            let results = Array(answer.dropLast())
            #expect(results.count == inputs.count)
            #expect(results[20] == -1000)
            let others = results.enumerated().filter { $0.offset != 20 }
            #expect(others.allSatisfy { $0.element == inputs[$0.offset] + 100 })
            #expect(answer.last == 1)
        }

        @Test("a forking pool's workers keep the descriptors its closure captured")
        func forkingPoolKeepsDescriptors() async throws {
            let answer = try await ChildProcess.run(RunForkingPoolWithDescriptors(), startMethod: .spawn)
            #expect(answer == [10, 20, 30, 40, 50, 60, 6])
        }

        @Test("a forking pool is refused while other threads run")
        func forkingPoolRefusedWithThreads() {
            let error = #expect(throws: MultiprocessingError.self) {
                _ = try ForkingPool(workers: 1) { (input: Int) in input }
            }
            #expect(error?.code == .unsafeFork)
        }

        @Test("a worker that grows past its memory limit is replaced, and no task is lost")
        func memoryRecycling() async throws {
            let options = PoolOptions(maxWorkerMemory: 100 << 20)
            try await withProcessPool(workers: 1, options: options) { pool in
                let pids = try await pool.map(Leak20MiB.self, 0..<12, chunkSize: 1).collect()
                #expect(pids.count == 12)
                #expect(Set(pids).count >= 2)
                #expect(pool.statistics[0].restarts >= 1)
            }
        }

        @Test("progress reports done, total and rate, and ends with the map")
        func progress() async throws {
            try await withProcessPool(workers: 2) { pool in
                let (map, updates) = pool.map(SquareFunction.self, 0..<1000, chunkSize: 10).progressUpdates()
                let collected = Task {
                    var last: PoolProgress?
                    for await update in updates { last = update }
                    return last
                }
                #expect(try await map.collect().count == 1000)
                let last = await collected.value
                #expect(last?.done == 1000)
                #expect(last?.total == 1000)
                #expect(last?.isFinished == true)
                #expect(last?.fraction == 1)
                #expect((last?.rate ?? 0) > 0)
                let seen = Mutex(0)
                _ = try await pool.map(SquareFunction.self, 0..<100, chunkSize: 10)
                    .reportingProgress { update in seen.withLock { $0 = max($0, update.done) } }
                    .showingProgressBar(label: "test")
                    .collect()
                #expect(seen.withLock { $0 } == 100)
            }
        }
    }
}
