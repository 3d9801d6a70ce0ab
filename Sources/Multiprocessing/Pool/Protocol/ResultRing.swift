#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import CMultiprocessing

/// The shared-memory ring a pool worker puts its results in (`ring.c`).
///
/// A result in the ring is the pool's as soon as `put` returns, even if the
/// worker dies the next instant: the worker sends each result before it
/// starts the next chunk without a system call, and wakes the pool (a
/// doorbell frame on its results pipe) only when the pool said it would sleep.
/// A result too large for the ring travels on the pipe, and a marker in the
/// ring keeps its place in the order.
struct ResultRing: Codable, Sendable {
    /// Results up to this size go in the ring; larger ones on the pipe.
    static let largestInRing = 1 << 18
    /// Room for several of the largest results, or for hundreds of small
    /// ones. A worker whose next result does not fit waits for the pool,
    /// which drains the ring whenever it holds records.
    static let capacity: UInt64 = 1 << 21

    let memory: SharedMemory

    init() throws {
        // Touched a record at a time: the worker maps it without populating 2 MiB up front.
        memory = try SharedMemory(size: mp_ring_size(Self.capacity), populatesOnAttach: false)
        mp_ring_init(pointer, Self.capacity)
    }

    var pointer: OpaquePointer { OpaquePointer(memory.baseAddress) }

    /// The worker's status words beside the ring.
    func status(timed: Bool) -> _ItemStatus {
        _ItemStatus(words: UnsafeMutableRawPointer(mp_ring_status(pointer)), timed: timed)
    }

    /// Worker: appends a record, waiting while the pool makes room. Returns
    /// whether the pool asked to be woken.
    func put(_ record: UnsafeRawBufferPointer) -> Bool {
        while true {
            let result = mp_ring_put(pointer, record.baseAddress, UInt32(record.count))
            if result >= 0 { return result == 1 }
            // Full: the pool is awake (it does not sleep while records wait) and drains it.
            usleep(50)
        }
    }

    /// Pool: the next record, `nil` when the ring is empty.
    /// - Throws: `.decodingFailed` when the ring's memory is corrupt.
    func take() throws -> [UInt8]? {
        let length = mp_ring_peek(pointer)
        if length == -1 { return nil }
        guard length >= 0 else {
            throw MultiprocessingError(.decodingFailed, "a pool worker's result ring is corrupt")
        }
        return [UInt8](unsafeUninitializedCapacity: Int(length)) { buffer, count in
            mp_ring_take(pointer, buffer.baseAddress, UInt32(length))
            count = Int(length)
        }
    }
}
