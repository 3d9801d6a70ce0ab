#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import CMultiprocessing
import Synchronization

/// Shared memory segments that are used again once every process has let
/// go of them, for programs that hand large buffers to other processes over
/// and over.
///
/// A new segment costs the kernel a fresh zeroed page for every 4 KiB, which
/// dominates a one-shot transfer: on a 2-vCPU machine, a new 256 MiB segment
/// that a child fills takes about 0.2 s before anyone copies a byte. A pool
/// keeps released segments and hands them out again, zeroed, so the pages are
/// already there.
///
/// ```swift
/// let pool = SharedMemoryPool()
/// for frame in frames {
///     let memory = try pool.segment(size: frameSize)   // zero-filled
///     try await ChildProcess.run(Decode(frame: frame, into: memory))
///     consume(memory.copyBytes())
/// }                                                     // each goes back to the pool
/// ```
///
/// A segment goes back only when no process maps it: every process that
/// receives it (in a task value) or inherits it (by forking) is counted in a
/// header page after its bytes, and uncounts itself when it releases the
/// segment. A process that dies while holding it is never uncounted, so that
/// segment is freed instead of reused: no process can ever see another's
/// bytes. The pool keeps at most `maximumBytes`, dropping the oldest
/// segments first, and frees what it keeps when it is released or at
/// ``removeAll()``.
public final class SharedMemoryPool: Sendable {
    let storage: Storage

    /// Creates a pool.
    ///
    /// - Parameter maximumBytes: How much released memory it keeps for
    ///   reuse; beyond it the oldest segments are freed.
    public init(maximumBytes: Int = 1 << 30) {
        storage = Storage(maximumBytes: maximumBytes)
    }

    deinit {
        storage.close()
    }

    /// A zero-filled segment of `size` bytes: a released one of the same
    /// size when the pool has one, else a new one.
    ///
    /// - Throws: `.invalidArgument` for a size below 1; `.systemCall` when
    ///   the kernel refuses.
    public func segment(size: Int) throws -> SharedMemory {
        try SharedMemory.check(size: size)
        let mappedSize = SharedMemory.pooledMappedSize(size)
        let reused = storage.take(mappedSize: mappedSize)
        do {
            return try SharedMemory(pooledSize: size, pool: storage, reused: reused)
        } catch {
            if let reused { Storage.free(fd: reused.fd, base: reused.base, mappedSize: mappedSize) }
            throw error
        }
    }

    /// The bytes of released segments the pool keeps now.
    public var retainedBytes: Int { storage.retainedBytes }

    /// Frees every segment the pool keeps.
    public func removeAll() { storage.removeAll() }

    /// The kept segments, shared with the segments handed out (which return
    /// here when released, also after the pool object itself is gone, when
    /// they are freed instead).
    final class Storage: Sendable {
        private struct Kept {
            var fd: Int32
            var base: UnsafeMutableRawPointer
            var mappedSize: Int
        }

        private struct State: @unchecked Sendable {
            // @unchecked: the pointers are mappings owned by the pool, touched only under the lock.
            var kept: [Kept] = []
            var bytes = 0
            var closed = false
        }

        private let state = ForkSafeMutex(State())
        private let maximumBytes: Int

        init(maximumBytes: Int) {
            self.maximumBytes = maximumBytes
        }

        func take(mappedSize: Int) -> (fd: Int32, base: UnsafeMutableRawPointer)? {
            state.withLock { state in
                guard let index = state.kept.lastIndex(where: { $0.mappedSize == mappedSize }) else { return nil }
                let kept = state.kept.remove(at: index)
                state.bytes -= kept.mappedSize
                return (kept.fd, kept.base)
            }
        }

        /// Keeps a segment no process maps; returns false when the pool is
        /// closed or the segment is larger than it keeps (the caller frees it).
        func keep(fd: Int32, base: UnsafeMutableRawPointer, mappedSize: Int) -> Bool {
            let evicted: [Kept]? = state.withLock { state in
                guard !state.closed, mappedSize <= maximumBytes else { return nil }
                var evicted: [Kept] = []
                while state.bytes + mappedSize > maximumBytes, !state.kept.isEmpty {
                    let oldest = state.kept.removeFirst()
                    state.bytes -= oldest.mappedSize
                    evicted.append(oldest)
                }
                state.kept.append(Kept(fd: fd, base: base, mappedSize: mappedSize))
                state.bytes += mappedSize
                return evicted
            }
            guard let evicted else { return false }
            for segment in evicted { Self.free(fd: segment.fd, base: segment.base, mappedSize: segment.mappedSize) }
            return true
        }

        var retainedBytes: Int { state.withLock { $0.bytes } }

        func removeAll() {
            let kept = state.withLock { state in
                defer {
                    state.kept = []
                    state.bytes = 0
                }
                return state.kept
            }
            for segment in kept { Self.free(fd: segment.fd, base: segment.base, mappedSize: segment.mappedSize) }
        }

        func close() {
            state.withLock { $0.closed = true }
            removeAll()
        }

        static func free(fd: Int32, base: UnsafeMutableRawPointer, mappedSize: Int) {
            Platform.unmap(base, size: mappedSize)
            Platform.close(fd)
        }
    }
}
