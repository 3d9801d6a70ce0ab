#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import Multiprocessing

/// A queue the producer benchmark puts into.
protocol IntQueue: Codable, Sendable {
    func put(_ value: Int) throws
}

extension ProcessQueue: IntQueue where Element == Int {
    func put(_ value: Int) throws { try put(value, timeout: nil) }
}

extension SimpleProcessQueue: IntQueue where Element == Int {}

/// Waits for "go", then puts `count` ints.
struct QueueProducer<Queue: IntQueue>: ProcessTask {
    var queue: Queue
    var control: Connection
    var count: Int

    func run() throws {
        try control.sendBytes([1])
        while true {
            guard let go = try? control.receiveBytes(), !go.isEmpty else { return }
            for value in 0..<count { try queue.put(value) }
        }
    }
}

func queueWorkloads(_ report: inout Report) throws {
    let messages = 200_000
    if selected("W4.simplequeue.child_to_parent") {
        let queue = try SimpleProcessQueue<Int>()
        let samples = try timeQueue(messages: messages, get: { try queue.get() }) { control in
            QueueProducer(queue: queue, control: control, count: messages)
        }
        report.add(
            Measurement(
                name: "W4.simplequeue.child_to_parent", unit: "msgs/s", better: "higher", samples: samples,
                note: "a child puts \(messages) Ints into a SimpleProcessQueue, the parent gets them; start-up excluded"
            ))
    }
    if selected("W4.queue.child_to_parent") {
        let queue = try ProcessQueue<Int>()
        let samples = try timeQueue(messages: messages, get: { try queue.get() }) { control in
            QueueProducer(queue: queue, control: control, count: messages)
        }
        report.add(
            Measurement(
                name: "W4.queue.child_to_parent", unit: "msgs/s", better: "higher", samples: samples,
                note:
                    "a child puts \(messages) Ints into a ProcessQueue, the parent gets them; start-up excluded (ready/go)"
            ))
    }
}

/// Starts a producer child, then times rounds of "go" -> every message received.
func timeQueue<Producer: ProcessTask>(
    messages: Int, get: () throws -> Int, producer: (Connection) -> Producer
) throws -> [Double] where Producer.Output == Void {
    let (mine, theirs) = try Connection.pipe()
    let child = try ChildProcess(producer(theirs))
    try child.start()
    theirs.close()
    _ = try mine.receiveBytes()
    var samples: [Double] = []
    for _ in 0..<reps(5) {
        let start = now()
        try mine.sendBytes([1])
        for expected in 0..<messages {
            let value = try get()
            precondition(value == expected)
        }
        samples.append(Double(messages) / (now() - start).seconds)
    }
    try mine.sendBytes([])
    mine.close()
    try child.join()
    return samples
}

/// Copies its private buffer into the shared segment on each "go".
struct SharedMemoryWriter: ProcessTask {
    var memory: SharedMemory
    var control: Connection

    func run() throws {
        let source = UnsafeMutableRawBufferPointer.allocate(byteCount: memory.size, alignment: 64)
        defer { source.deallocate() }
        source.initializeMemory(as: UInt8.self, repeating: 5)
        // Touch every page of the mapping once, so steady rounds measure copies, not faults.
        memory.bytes.initializeMemory(as: UInt8.self, repeating: 0)
        try control.sendBytes([1])
        while true {
            guard let go = try? control.receiveBytes(), !go.isEmpty else { return }
            memory.baseAddress.copyMemory(from: source.baseAddress!, byteCount: memory.size)
            try control.sendBytes([1])
        }
    }
}

/// Attaches a fresh segment and fills it once.
struct SharedMemoryFill: ProcessTask {
    var memory: SharedMemory
    func run() {
        memory.bytes.initializeMemory(as: UInt8.self, repeating: 9)
    }
}

func sharedMemoryWorkloads(_ report: inout Report) throws {
    let size = 256 << 20
    if selected("W5.shm.steady") {
        let memory = try SharedMemory(size: size)
        let destination = UnsafeMutableRawBufferPointer.allocate(byteCount: size, alignment: 64)
        defer { destination.deallocate() }
        destination.initializeMemory(as: UInt8.self, repeating: 0)
        let (mine, theirs) = try Connection.pipe()
        let child = try ChildProcess(SharedMemoryWriter(memory: memory, control: theirs))
        try child.start()
        theirs.close()
        _ = try mine.receiveBytes()
        var samples: [Double] = []
        for _ in 0..<reps(5) {
            let start = now()
            try mine.sendBytes([1])
            _ = try mine.receiveBytes()
            destination.baseAddress!.copyMemory(from: memory.baseAddress, byteCount: size)
            samples.append(Double(size) / 1e9 / (now() - start).seconds)
        }
        try mine.sendBytes([])
        mine.close()
        try child.join()
        report.add(
            Measurement(
                name: "W5.shm.steady", unit: "GB/s", better: "higher", samples: samples,
                note:
                    "256 MiB SharedMemory mapped and touched on both sides: the child copies in, signals, the parent copies out"
            ))
    }
    /// One round of the one-shot shape with a segment from `segment`; GB/s.
    func oneshot(_ segment: () throws -> SharedMemory) throws -> Double {
        let start = now()
        let memory = try segment()
        let child = try ChildProcess(SharedMemoryFill(memory: memory))
        try child.start()
        try child.join()
        let copy = memory.copyBytes()
        precondition(copy[size - 1] == 9)
        return Double(size) / 1e9 / (now() - start).seconds
    }
    if selected("W5.shm.oneshot") {
        let samples = try (0..<reps(5)).map { _ in try oneshot { try SharedMemory(size: size) } }
        report.add(
            Measurement(
                name: "W5.shm.oneshot", unit: "GB/s", better: "higher", samples: samples,
                note:
                    "create a 256 MiB SharedMemory, a new child (forkserver) attaches and fills it, the parent copies "
                    + "it out into a new array (copyBytes()); the segment is freed when the last mapping goes"))
    }
    if selected("X.shm.oneshot.pooled") {
        let pool = SharedMemoryPool()
        let samples = try (0..<(reps(5) + 1)).map { _ in try oneshot { try pool.segment(size: size) } }
        report.add(
            Measurement(
                name: "X.shm.oneshot.pooled", unit: "GB/s", better: "higher", samples: Array(samples.dropFirst()),
                note:
                    "W5.shm.oneshot with the segment from a SharedMemoryPool: released when the child and the "
                    + "parent let go, handed out again zeroed (the first, cold round is left out)"))
    }
}

/// Increments a locked shared counter `times` times after "go".
struct LockHammer: ProcessTask {
    var counter: SharedValue<Int>
    var control: Connection
    var times: Int

    func run() throws {
        try control.sendBytes([1])
        _ = try control.receiveBytes()
        for _ in 0..<times { try counter.withLock { $0 += 1 } }
        try control.sendBytes([1])
    }
}

func lockWorkloads(_ report: inout Report) throws {
    if selected("X.lock.uncontended") {
        let lock = try ProcessLock()
        let operations = 1_000_000
        var samples: [Double] = []
        for _ in 0..<reps(5) {
            let start = now()
            for _ in 0..<operations {
                try lock.lock()
                try lock.unlock()
            }
            samples.append((now() - start).microseconds * 1000 / Double(operations))
        }
        report.add(
            Measurement(
                name: "X.lock.uncontended", unit: "ns/op", better: "lower", samples: samples,
                note: "ProcessLock lock()+unlock() in one process, \(operations) times"))
    }
    if selected("X.lock.contended") {
        let times = 200_000
        var samples: [Double] = []
        for _ in 0..<reps(3) {
            let counter = try SharedValue(0)
            let (mine, theirs) = try Connection.pipe()
            let child = try ChildProcess(LockHammer(counter: counter, control: theirs, times: times))
            try child.start()
            theirs.close()
            _ = try mine.receiveBytes()
            let start = now()
            try mine.sendBytes([1])
            for _ in 0..<times { try counter.withLock { $0 += 1 } }
            _ = try mine.receiveBytes()
            let elapsed = now() - start
            try child.join()
            precondition(counter.value == 2 * times)
            samples.append(elapsed.microseconds * 1000 / Double(2 * times))
        }
        report.add(
            Measurement(
                name: "X.lock.contended", unit: "ns/op", better: "lower", samples: samples,
                note:
                    "two processes each increment a SharedValue under its ProcessLock \(times) times; time per increment"
            ))
    }
}
