#if canImport(Glibc)
    import Glibc
#endif
import Testing
import CMultiprocessing
@testable import Multiprocessing

extension ProcessSuites {
    @Suite("Process queues", .serialized, .timeLimit(.minutes(2)))
    struct QueueTests {
        @Test("two children put 1 and 2, the parent gets both", arguments: [StartMethod.spawn, .forkserver])
        func twoProducers(method: StartMethod) throws {
            let queue = try ProcessQueue<Int>()
            let producers = try [1, 2].map { try ChildProcess(PutValue(queue: queue, value: $0), startMethod: method) }
            for producer in producers { try producer.start() }
            let values = [try queue.get(timeout: .seconds(10)), try queue.get(timeout: .seconds(10))]
            #expect(values.sorted() == [1, 2])
            for producer in producers { try producer.join() }
            #expect(queue.isEmpty)
        }

        @Test("a full queue blocks and times out with .full; an empty one with .empty")
        func fullAndEmpty() throws {
            let queue = try ProcessQueue<Int>(maxCount: 2)
            try queue.put(1)
            try queue.put(2)
            #expect(queue.isFull)
            #expect(queue.count == 2)
            let start = ContinuousClock.now
            let full = #expect(throws: MultiprocessingError.self) { try queue.put(3, timeout: .milliseconds(100)) }
            #expect(full?.code == .full)
            #expect(ContinuousClock.now - start >= .milliseconds(90))
            #expect(try queue.get() == 1)
            try queue.put(3, timeout: .zero)
            #expect(try queue.get() == 2)
            #expect(try queue.get() == 3)
            let empty = #expect(throws: MultiprocessingError.self) { _ = try queue.get(timeout: .zero) }
            #expect(empty?.code == .empty)
            let waited = #expect(throws: MultiprocessingError.self) { _ = try queue.get(timeout: .milliseconds(50)) }
            #expect(waited?.code == .empty)
        }

        @Test("a 100 MiB value passes through the queue from a child")
        func largeValue() async throws {
            let queue = try ProcessQueue<[UInt8]>()
            let size = 100 << 20
            let producer = try ChildProcess(PutBigValue(queue: queue, size: size))
            try producer.start()
            let value = try await queue.get()
            #expect(value.count == size)
            #expect(value[0] == 7 && value[12345] == 1 && value[size - 1] == 2)
            try await producer.join()
        }

        @Test("more large values than descriptors can wait in flight pass while the consumer lags")
        func manyLargeValuesInFlight() throws {
            // 17 KiB is over a 64 KiB ring's inline limit: each value travels
            // in its own segment, whose descriptor waits in a socket until a
            // get takes it; 1000 of them are more than the socket holds.
            let queue = try ProcessQueue<[UInt8]>(bufferSize: 1 << 16)
            let count = 1000
            let producer = try ChildProcess(PutManyLargeValues(queue: queue, count: count, size: 17 << 10))
            try producer.start()
            usleep(300_000)  // let the producer run ahead
            for index in 0..<count {
                let value = try queue.get(timeout: .seconds(20))
                #expect(value.count == 17 << 10 && value.allSatisfy { $0 == UInt8(index % 256) })
            }
            #expect(try producer.join(timeout: .seconds(20)))
            #expect(producer.terminationStatus == .exited(0))
        }

        @Test("a producer killed mid-stream leaves every value whose put returned, then the end")
        func producerKilledMidStream() throws {
            let queue = try ProcessQueue<[Int]>(bufferSize: 1 << 22)
            let (progress, theirs) = try Connection.pipe(duplex: false)
            let producer = try ChildProcess(PutForever(queue: queue, progress: theirs))
            try producer.start()
            theirs.close()
            var returned = -1
            while returned < 2000 { returned = try progress.receive(Int.self) }
            try producer.kill()
            try producer.join()
            while let index = try? progress.receive(Int.self) { returned = index }
            queue.close()
            var expected = 0
            while true {
                let value: [Int]
                do {
                    value = try queue.get(timeout: .seconds(5))
                } catch let error as MultiprocessingError where error.code == .endOfStream {
                    break
                }
                #expect(value == Array(repeating: expected, count: 100 + expected % 50))
                expected += 1
            }
            // Every put that returned is there (and at most the one in flight besides).
            #expect(expected >= returned + 1)
            #expect(expected <= returned + 2)
            #expect(throws: MultiprocessingError.self) { try queue.put([1]) }
        }

        @Test("taskDone and join; an encoding error surfaces at put")
        func joinableAndEncodingErrors() async throws {
            let queue = try ProcessQueue<Int>()
            for value in 0..<3 { try await queue.put(value) }
            #expect(try await queue.join(timeout: .milliseconds(50)) == false)
            for _ in 0..<3 {
                _ = try await queue.get()
                try queue.taskDone()
            }
            #expect(try await queue.join(timeout: .seconds(1)))
            let tooMany = #expect(throws: MultiprocessingError.self) { try queue.taskDone() }
            #expect(tooMany?.code == .invalidArgument)

            let strict = try ProcessQueue<Unencodable>()
            let error = await #expect(throws: MultiprocessingError.self) { try await strict.put(Unencodable(value: 1)) }
            #expect(error?.code == .encodingFailed)
            #expect(strict.isEmpty)
        }

        @Test(
            "shutdown wakes a blocked putter and getters in other processes; gets drain what is left, then throw",
            arguments: everyStartMethod)
        func shutdown(method: StartMethod) throws {
            let outcome = try outcome(of: ShutdownScenario(), startingChildrenWith: method)
            for waiter in [outcome.putter, outcome.getter, outcome.simpleGetter] {
                #expect(waiter.error == "shutDown")
                // Woken by the shutdown, after waiting, and long before their own timeout.
                #expect(waiter.seconds >= 0.25)
                #expect(waiter.seconds < 10)
            }
            #expect(outcome.drained == [1, 2])
            #expect(outcome.getAfterDrain == "shutDown")
            #expect(outcome.putAfterShutdown == "shutDown")
            #expect(outcome.putAfterClose == "shutDown")
        }

        @Test(
            "an immediate shutdown discards what is queued, gets throw at once, and join waits only for values taken",
            arguments: everyStartMethod)
        func immediateShutdown(method: StartMethod) throws {
            let outcome = try outcome(of: ImmediateShutdownScenario(), startingChildrenWith: method)
            #expect(outcome.countAfterShutdown == 0)
            #expect(outcome.getAfterShutdown == "shutDown")
            // The large value's descriptor was taken out of the socket and closed.
            #expect(outcome.descriptorsKept)
            #expect(outcome.joinerWaitedForTaken)
            #expect(outcome.joiner.joined)
            #expect(outcome.joiner.seconds >= 0.4)
        }

        @Test(
            "a put above the maximum message size is refused; a get discards a larger value put through another handle",
            arguments: everyStartMethod)
        func maximumMessageSize(method: StartMethod) throws {
            let outcome = try outcome(of: MessageSizeScenario(), startingChildrenWith: method)
            #expect(outcome.putOverLimit == "messageTooLarge")
            #expect(outcome.countAfterRefusedPut == 0)
            #expect(outcome.childSawLimit == 1024)
            #expect(outcome.gets == ["messageTooLarge", "messageTooLarge", "none"])
            #expect(outcome.lastValue == [9, 9, 9])
            // The discarded values count as done.
            #expect(outcome.joined)
        }

        @Test("the error for a discarded value names its size; a maximum below 1 is refused")
        func messageSizeErrors() throws {
            let queue = try ProcessQueue<[UInt8]>()
            try queue.put([UInt8](repeating: 1, count: 5000))
            let small = try ProcessQueue(queue, maximumMessageSize: 100)
            #expect(small.maximumMessageSize == 100 && queue.maximumMessageSize == nil)
            let error = #expect(throws: MultiprocessingError.self) { _ = try small.get(timeout: .zero) }
            #expect(error?.code == .messageTooLarge)
            #expect(error?.message.contains("of 500") == true)
            #expect(queue.isEmpty)
            let bad = #expect(throws: MultiprocessingError.self) { _ = try ProcessQueue<Int>(maximumMessageSize: 0) }
            #expect(bad?.code == .invalidArgument)
        }

        @Test("a record whose header was overwritten with a huge length fails the get with .decodingFailed")
        func corruptRecordHeader() throws {
            let queue = try ProcessQueue<[UInt8]>()
            try queue.put([1, 2, 3])
            let state = queue.memory.baseAddress.assumingMemoryBound(to: mp_queue.self)
            let ring = queue.memory.baseAddress + MemoryLayout<mp_queue>.stride
            ring.storeBytes(of: UInt64(256 << 20), toByteOffset: Int(state.pointee.head), as: UInt64.self)
            let error = #expect(throws: MultiprocessingError.self) { _ = try queue.get(timeout: .zero) }
            #expect(error?.code == .decodingFailed)
        }
    }
}
