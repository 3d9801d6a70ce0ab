#if canImport(Glibc)
    import Glibc
#endif
import Multiprocessing

struct PutValue: ProcessTask {
    var queue: ProcessQueue<Int>
    var value: Int
    func run() throws { try queue.put(value) }
}

/// Puts 0, 1, 2, ... and reports each index after its put returned, until killed.
struct PutForever: ProcessTask {
    var queue: ProcessQueue<[Int]>
    var progress: Connection
    func run() throws {
        var index = 0
        while true {
            try queue.put(Array(repeating: index, count: 100 + index % 50))
            try progress.send(index)
            index += 1
        }
    }
}

struct PutBigValue: ProcessTask {
    var queue: ProcessQueue<[UInt8]>
    var size: Int
    func run() throws {
        var bytes = [UInt8](repeating: 7, count: size)
        bytes[12345] = 1
        bytes[size - 1] = 2
        try queue.put(bytes)
    }
}

/// Puts `count` values of `size` bytes, value `i` filled with `i % 256`.
struct PutManyLargeValues: ProcessTask {
    var queue: ProcessQueue<[UInt8]>
    var count: Int
    var size: Int
    func run() throws {
        for index in 0..<count { try queue.put([UInt8](repeating: UInt8(index % 256), count: size)) }
    }
}

struct Unencodable: Codable, Sendable {
    var value: Int
    init(value: Int) { self.value = value }
    init(from decoder: any Decoder) throws { value = 0 }
    func encode(to encoder: any Encoder) throws {
        throw EncodingError.invalidValue(value, .init(codingPath: [], debugDescription: "refuses to be encoded"))
    }
}

/// A child blocks putting into a full queue, another getting from an empty
/// one; the scenario process shuts both queues down.
struct ShutdownScenario: Scenario {
    struct Outcome: Codable, Sendable {
        var putter: TimedWait
        var getter: TimedWait
        var simpleGetter: TimedWait
        var drained: [Int]
        var getAfterDrain: String
        var putAfterShutdown: String
        var putAfterClose: String
    }

    func run(startingChildrenWith method: StartMethod) throws -> Outcome {
        let full = try ProcessQueue<Int>(maxCount: 2)
        try full.put(1)
        try full.put(2)
        let empty = try ProcessQueue<Int>()
        let simple = try SimpleProcessQueue<Int>()
        let started = try ProcessSemaphore(value: 0)
        let children = [
            try ChildProcess(PutReportingError(queue: full, started: started), startMethod: method),
            try ChildProcess(GetReportingError(queue: empty, started: started), startMethod: method),
            try ChildProcess(GetFromSimpleReportingError(queue: simple, started: started), startMethod: method),
        ]
        for child in children { try child.start() }
        for _ in children { _ = try started.acquire(timeout: .seconds(20)) }
        usleep(300_000)  // they now wait, for room or for a value
        full.shutdown()
        empty.shutdown()
        simple.shutdown()
        for child in children { try child.join() }
        var drained: [Int] = []
        let getAfterDrain = errorCode {
            while true { drained.append(try full.get(timeout: .zero)) }
        }
        let putAfterShutdown = errorCode { try full.put(4) }
        full.close()
        return Outcome(
            putter: try children[0].value, getter: try children[1].value, simpleGetter: try children[2].value,
            drained: drained, getAfterDrain: getAfterDrain, putAfterShutdown: putAfterShutdown,
            putAfterClose: errorCode { try full.put(5) })
    }
}

struct PutReportingError: ProcessTask {
    var queue: ProcessQueue<Int>
    var started: ProcessSemaphore
    func run() -> TimedWait {
        // Timed from before it says it started: the time includes the scenario's pause.
        timed {
            try started.release()
            try queue.put(3, timeout: .seconds(20))
        }
    }
}

struct GetReportingError: ProcessTask {
    var queue: ProcessQueue<Int>
    var started: ProcessSemaphore
    func run() -> TimedWait {
        // Timed from before it says it started: the time includes the scenario's pause.
        timed {
            try started.release()
            _ = try queue.get(timeout: .seconds(20))
        }
    }
}

struct GetFromSimpleReportingError: ProcessTask {
    var queue: SimpleProcessQueue<Int>
    var started: ProcessSemaphore
    func run() -> TimedWait {
        // Timed from before it says it started: the time includes the scenario's pause.
        timed {
            try started.release()
            _ = try queue.get()
        }
    }
}

/// Three values, one of them large enough for a segment of its own, wait in
/// a queue, one more has been taken; a child waits in join. An immediate
/// shutdown discards the three, and the join returns once the one taken is done.
struct ImmediateShutdownScenario: Scenario {
    struct Outcome: Codable, Sendable {
        var countAfterShutdown: Int
        var getAfterShutdown: String
        var descriptorsKept: Bool
        var joinerWaitedForTaken: Bool
        var joiner: TimedJoin
    }

    func run(startingChildrenWith method: StartMethod) throws -> Outcome {
        let queue = try ProcessQueue<[UInt8]>(bufferSize: 1 << 16)
        for value in [[0], [1], [UInt8](repeating: 2, count: 64 << 10), [3]] as [[UInt8]] { try queue.put(value) }
        _ = try queue.get()
        let started = try ProcessSemaphore(value: 0)
        let joiner = try ChildProcess(JoinReporting(queue: queue, started: started), startMethod: method)
        try joiner.start()
        _ = try started.acquire(timeout: .seconds(20))
        usleep(200_000)
        let before = openDescriptors()
        queue.shutdown(immediate: true)
        let descriptorsKept = openDescriptors() == before
        let countAfterShutdown = queue.count
        let getAfterShutdown = errorCode { _ = try queue.get(timeout: .seconds(5)) }
        usleep(300_000)
        let joinerWaitedForTaken = joiner.isAlive
        try queue.taskDone()
        try joiner.join()
        return Outcome(
            countAfterShutdown: countAfterShutdown, getAfterShutdown: getAfterShutdown,
            descriptorsKept: descriptorsKept, joinerWaitedForTaken: joinerWaitedForTaken, joiner: try joiner.value)
    }
}

struct TimedJoin: Codable, Sendable {
    var joined: Bool
    var seconds: Double
}

struct JoinReporting: ProcessTask {
    var queue: ProcessQueue<[UInt8]>
    var started: ProcessSemaphore
    func run() throws -> TimedJoin {
        let start = ContinuousClock.now
        try started.release()
        let joined = try queue.join(timeout: .seconds(20))
        return TimedJoin(joined: joined, seconds: seconds(since: start))
    }
}

/// A queue limited to 1 KiB refuses a larger put; a child puts larger
/// values through a handle of its own without the limit; the limited
/// handle's gets discard them.
struct MessageSizeScenario: Scenario {
    struct Outcome: Codable, Sendable {
        var putOverLimit: String
        var countAfterRefusedPut: Int
        var childSawLimit: Int?
        var gets: [String]
        var lastValue: [UInt8]?
        var joined: Bool
    }

    func run(startingChildrenWith method: StartMethod) throws -> Outcome {
        let queue = try ProcessQueue<[UInt8]>(bufferSize: 1 << 16, maximumMessageSize: 1024)
        let putOverLimit = errorCode { try queue.put([UInt8](repeating: 1, count: 2000)) }
        let countAfterRefusedPut = queue.count
        let child = try ChildProcess(PutPastTheLimit(queue: queue), startMethod: method)
        try child.start()
        try child.join()
        var lastValue: [UInt8]?
        let gets = (0..<3).map { _ in errorCode { lastValue = try queue.get(timeout: .seconds(5)) } }
        try queue.taskDone()
        return Outcome(
            putOverLimit: putOverLimit, countAfterRefusedPut: countAfterRefusedPut, childSawLimit: try child.value,
            gets: gets, lastValue: lastValue, joined: try queue.join(timeout: .seconds(5)))
    }
}

/// Puts a 100 KiB value (in a segment of its own), a 4000-byte one (in the
/// ring) and a small one through a handle without a limit; returns the
/// limit of the handle it was given.
struct PutPastTheLimit: ProcessTask {
    var queue: ProcessQueue<[UInt8]>
    func run() throws -> Int? {
        let unlimited = try ProcessQueue(queue, maximumMessageSize: nil)
        try unlimited.put([UInt8](repeating: 7, count: 100 << 10))
        try unlimited.put([UInt8](repeating: 8, count: 4000))
        try unlimited.put([9, 9, 9])
        return queue.maximumMessageSize
    }
}
