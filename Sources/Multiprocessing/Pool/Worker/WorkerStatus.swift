#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import CMultiprocessing
import Synchronization

/// What a pool worker is running, written by the worker into words of shared
/// memory beside its result ring and read by the pool without a message:
/// the job, the item of that job that started last, and (when the pool has a
/// task timeout) when it started, on `CLOCK_MONOTONIC` in nanoseconds.
///
/// One store per item: the pool learns which item a dead worker was
/// running, how far a long chunk has come, and when an item overstays its
/// timeout.
public struct _ItemStatus {
    @usableFromInline let words: UnsafeMutableRawPointer?
    @usableFromInline let timed: Bool

    @usableFromInline
    init(words: UnsafeMutableRawPointer?, timed: Bool) {
        self.words = words
        self.timed = timed
    }

    /// A status that records nothing (outside a pool worker).
    @inlinable
    public static var none: _ItemStatus { _ItemStatus(words: nil, timed: false) }

    /// Records that item `item` (its index in the chunk's payload) starts now.
    @inlinable
    public func started(_ item: Int) {
        guard let words else { return }
        if timed { Self.stampStart(words) }
        Self.word(words, 1).pointee.store(UInt64(item), ordering: .releasing)
    }

    @inlinable
    static func word(_ words: UnsafeMutableRawPointer, _ index: Int) -> UnsafeMutablePointer<Atomic<UInt64>> {
        (words + 8 * index).assumingMemoryBound(to: Atomic<UInt64>.self)
    }

    @usableFromInline
    static func stampStart(_ words: UnsafeMutableRawPointer) {
        word(words, 2).pointee.store(monotonicNanoseconds(), ordering: .relaxed)
    }

    /// The item of a job none of whose items has started yet.
    static let noItem = Int(Int32.max)

    /// Records that the job `id` starts (before any of its items).
    func startedJob(_ id: UInt64) {
        guard let words else { return }
        Self.word(words, 1).pointee.store(UInt64(Self.noItem), ordering: .releasing)
        Self.word(words, 0).pointee.store(id, ordering: .releasing)
    }

    /// The pool's view: the job, the item that started last and when.
    func read() -> (job: UInt64, item: Int, startedAt: UInt64) {
        guard let words else { return (0, 0, 0) }
        while true {
            let item = Self.word(words, 1).pointee.load(ordering: .acquiring)
            let job = Self.word(words, 0).pointee.load(ordering: .acquiring)
            let started = Self.word(words, 2).pointee.load(ordering: .acquiring)
            // A worker that moved on in between: read again.
            if Self.word(words, 1).pointee.load(ordering: .acquiring) == item { return (job, Int(item), started) }
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds, without `Duration`'s 128-bit arithmetic:
/// the same clock in every process.
func monotonicNanoseconds() -> UInt64 {
    var now = timespec()
    clock_gettime(CLOCK_MONOTONIC, &now)
    return UInt64(now.tv_sec) &* 1_000_000_000 &+ UInt64(now.tv_nsec)
}
