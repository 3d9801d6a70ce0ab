#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import Multiprocessing

/// Ten operations of one kind per trial, so 1,000 trials are 10,000: the
/// heap (`mallinfo2`) and resident memory must not grow with them, and no
/// descriptor, zombie or thread may be left once the fault's pool is gone.
func leakFault(
    _ name: String, _ summary: String, bytesPerOperation: Int = 64,
    _ operation: @escaping @Sendable (_ index: Int, _ arena: Arena) async throws -> String?
) -> Fault {
    Fault(
        name: "leak/\(name)", summary: summary, deadline: .seconds(120),
        leaks: .memory(bytesPerOperation: bytesPerOperation), operationsPerTrial: 10
    ) { index, arena in
        for step in 0..<10 {
            if let wrong = try await operation(index * 10 + step, arena) { return .wrong(wrong) }
        }
        return .correct
    }
}

/// A task of 16 KiB: a leak of the encoded task shows in a few hundred calls.
let payload = [UInt8](repeating: 7, count: 16 << 10)

let leakFaults = [
    leakFault("submit", "10,000 submits and applies of a 16 KiB task") { index, arena in
        let pool = try arena.pool("leak") { try ProcessPool(workers: 2) }
        let result =
            index % 2 == 0
            ? try await pool.submit(Measure(payload: payload)).value : try await pool.apply(Measure(payload: payload))
        return result == payload.count ? nil : "a task returned \(result), not \(payload.count)"
    },
    leakFault("map", "10,000 maps of 100 items") { index, arena in
        let pool = try arena.pool("leak") { try ProcessPool(workers: 2) }
        let results = try await pool.map(Twice.self, 0..<100).collect()
        return results == (0..<100).map { $0 * 2 } ? nil : "a map returned \(results.prefix(5))..."
    },
    leakFault("child-start", "10,000 child starts, spawn and forkserver", bytesPerOperation: 256) { index, _ in
        let child = try ChildProcess(Nothing(), startMethod: index % 2 == 0 ? .forkserver : .spawn)
        try child.start()
        try await child.join()
        defer { try? child.close() }
        return child.terminationStatus == .exited(0) ? nil : "a child ended \(child.terminationStatus!)"
    },
    leakFault("segment", "10,000 shared memory segments of 64 KiB, anonymous and named") { index, _ in
        let segment: SharedMemory
        if index % 2 == 0 {
            segment = try SharedMemory(size: 64 << 10)
        } else {
            segment = try SharedMemory.create(named: "multiprocessing-chaos-\(getpid())-\(index)", size: 64 << 10)
            try segment.unlink()
        }
        segment.bytes[segment.size - 1] = 1
        return segment.bytes[segment.size - 1] == 1 ? nil : "a segment lost its byte"
    },
    leakFault("queue", "10,000 queues, each with three messages through it") { index, _ in
        let queue = try ProcessQueue<Int>(bufferSize: 4096)
        for value in 0..<3 { try await queue.put(index + value) }
        var values: [Int] = []
        for _ in 0..<3 { values.append(try await queue.get()) }
        queue.close()
        return values == [index, index + 1, index + 2] ? nil : "a queue gave \(values)"
    },
]
