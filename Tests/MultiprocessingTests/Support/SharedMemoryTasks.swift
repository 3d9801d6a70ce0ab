#if canImport(Glibc)
    import Glibc
#endif
import Multiprocessing

struct IncrementShared: ProcessTask {
    var counter: SharedValue<Int>
    var times: Int
    func run() throws {
        for _ in 0..<times { try counter.withLock { $0 += 1 } }
    }
}

/// Takes the lock, says so, and dies holding it.
struct HoldLockAndDie: ProcessTask {
    var lock: ProcessLock
    var ready: Connection
    func run() throws {
        try lock.lock()
        try ready.send(1)
        raise(SIGKILL)
    }
}

/// Tries the lock for `milliseconds`; returns whether it got it.
struct TryLockFor: ProcessTask {
    var lock: ProcessLock
    var milliseconds: Int
    func run() throws -> Bool {
        guard try lock.lock(timeout: .milliseconds(milliseconds)) != nil else { return false }
        try lock.unlock()
        return true
    }
}

struct DoubleArray: ProcessTask {
    var array: SharedArray<Double>
    func run() {
        for index in 0..<array.count { array[index] *= 2 }
    }
}

struct ReadSharedBytes: ProcessTask {
    var memory: SharedMemory
    func run() -> [UInt8] { Array(memory.bytes.prefix(4)) }
}

/// Opens a named segment and returns its first bytes.
struct ReadNamedSegment: ProcessTask {
    var name: String
    func run() throws -> [UInt8] {
        let memory = try SharedMemory.open(named: name)
        return Array(memory.bytes.prefix(3))
    }
}

/// Fills a segment with `byte`.
struct FillSegment: ProcessTask {
    var memory: SharedMemory
    var byte: UInt8
    func run() {
        memory.bytes.initializeMemory(as: UInt8.self, repeating: byte)
    }
}

/// Holds a segment: says so, waits for "go", then fills it with `byte`.
struct HoldSegmentThenFill: ProcessTask {
    var memory: SharedMemory
    var control: Connection
    var byte: UInt8
    func run() throws {
        try control.sendBytes([1])
        _ = try control.receiveBytes()
        memory.bytes.initializeMemory(as: UInt8.self, repeating: byte)
        try control.sendBytes([2])
    }
}
