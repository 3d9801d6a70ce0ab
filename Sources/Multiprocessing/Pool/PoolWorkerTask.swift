#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import CMultiprocessing

/// The task every pool worker runs: set up, then run chunks until told to stop.
struct PoolWorkerTask: ProcessTask {
    var index: Int
    var work: Connection
    var results: Connection
    var ring: ResultRing
    /// The mangled name of an `InitializerRunner<I>`, and the wire encoding of the initializer.
    var initializerType: String?
    var initializer: [UInt8]?
    var maxMemory: Int?

    func run() async throws {
        // Its own process group: a timeout or a cancellation kills the worker
        // and whatever it started, together.
        _ = setpgid(0, 0)
        // Chunks allocate and free the same large arrays over and over.
        mp_keep_freed_memory_for_reuse()
        PoolWorker.currentIndex = index
        var out: [UInt8] = []
        if let failure = await initialize() {
            PoolMessage.appendFrameHeader(length: 2 + failure.count, to: &out)
            out += [PoolMessage.ready, 1] + failure
            try out.withUnsafeBytes { try results.sendRaw($0) }
            return
        }
        PoolMessage.appendFrameHeader(length: 2, to: &out)
        out += [PoolMessage.ready, 0]
        try out.withUnsafeBytes { try results.sendRaw($0) }
        out.removeAll(keepingCapacity: true)

        var kinds: [String: any PoolWork.Type] = [:]
        var lastName = ""
        var lastKind: (any PoolWork.Type)?
        while true {
            let message: [UInt8]
            do {
                message = try work.receiveFrame()
            } catch {
                return  // the pool is gone
            }
            guard let tag = message.first else { continue }
            if tag == PoolMessage.stop { break }
            let id = try PoolMessage.read(UInt64.self, from: message, at: 1)
            let nameLength = try PoolMessage.read(UInt16.self, from: message, at: 9)
            var payloadStart = 11
            if nameLength != PoolMessage.sameType {
                payloadStart += Int(nameLength)
                guard message.count >= payloadStart else {
                    throw MultiprocessingError(.decodingFailed, "a work message is truncated")
                }
                lastName = String(decoding: message[11..<payloadStart], as: UTF8.self)
                lastKind = kinds[lastName] ?? (_typeByName(lastName) as? any PoolWork.Type)
                kinds[lastName] = lastKind
            }
            let start = monotonicNanoseconds()
            let result: (kind: UInt8, payload: [UInt8])
            if let kind = lastKind {
                result = await kind.runChunk(message[payloadStart...])
            } else {
                let error = MultiprocessingError(
                    .unresolvableTask, "the pool worker cannot find the work type '\(lastName)'")
                result = encodeOutcomes([.failure(ErrorEnvelope(error, processName: ProcessIdentity.current.name))])
            }
            let nanoseconds = monotonicNanoseconds() &- start
            PoolMessage.appendResult(
                id: id, kind: result.kind, nanoseconds: nanoseconds, payload: result.payload, to: &out)
            // Each result is the pool's before the next chunk starts: if that
            // chunk kills the worker, the pool knows exactly which one it was.
            try send(result: out)
            if let maxMemory, residentMemory() > maxMemory {
                try results.sendBytes([PoolMessage.retiring])
                return
            }
            out.removeAll(keepingCapacity: true)
        }
    }

    /// Puts a result in the ring, or on the pipe with a marker in the ring
    /// when it is large; rings the doorbell when the pool sleeps.
    private func send(result: [UInt8]) throws {
        let wake: Bool
        if result.count <= ResultRing.largestInRing {
            wake = result.withUnsafeBytes { ring.put($0) }
        } else {
            try results.sendBytes(result)
            wake = withUnsafeBytes(of: PoolMessage.onPipe) { ring.put($0) }
        }
        if wake { try results.sendBytes([PoolMessage.doorbell]) }
    }

    /// Runs the initializer; returns the encoded error if it threw.
    private func initialize() async -> [UInt8]? {
        guard let initializerType, let initializer else { return nil }
        guard let runner = _typeByName(initializerType) as? any InitializerRunning.Type else {
            let error = MultiprocessingError(
                .unresolvableTask, "the pool worker cannot find the initializer type '\(initializerType)'")
            return try? WireEncoder().encode(ErrorEnvelope(error, processName: ProcessIdentity.current.name))
        }
        do {
            PoolWorker.currentState = try await runner.makeState(from: initializer)
            return nil
        } catch {
            return try? WireEncoder().encode(ErrorEnvelope(error, processName: ProcessIdentity.current.name))
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds, without `Duration`'s 128-bit arithmetic.
private func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
}

/// This process's resident memory in bytes, from /proc/self/statm.
func residentMemory() -> Int {
    guard let text = readSmallFile("/proc/self/statm") else { return 0 }
    let fields = text.split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

protocol InitializerRunning {
    static func makeState(from bytes: [UInt8]) async throws -> Any
}

/// Decodes and runs a ``WorkerInitializer`` in a worker, found by its mangled name.
enum InitializerRunner<I: WorkerInitializer>: InitializerRunning {
    static func makeState(from bytes: [UInt8]) async throws -> Any {
        let initializer = try WireDecoder().decode(I.self, from: bytes)
        return try await initializer.makeState()
    }
}
