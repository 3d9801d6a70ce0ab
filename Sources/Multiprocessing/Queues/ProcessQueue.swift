#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import CMultiprocessing

/// A first-in, first-out queue of values between processes (Python's
/// `multiprocessing.Queue` and `JoinableQueue`).
///
/// Any number of processes put and get. Values are encoded at ``put(_:timeout:)``
/// (so an encoding error is thrown there, not lost in a background thread) and
/// copied into a ring in shared memory; a value larger than a quarter of the
/// ring travels in a shared memory segment of its own instead, so values of
/// any size pass without going through a pipe.
///
/// A put becomes visible only once it is complete: a producer killed in the
/// middle of a put leaves the queue as it was, and no value whose put
/// returned is lost. The lock inside is robust: a process killed while
/// holding it does not wedge the others.
///
/// ``close()`` and ``shutdown(immediate:)`` end the queue for every process
/// that shares it, and wake every waiter. A ``maximumMessageSize`` bounds
/// what a put accepts and what a get takes in.
///
/// ```swift
/// let queue = try ProcessQueue<Int>()
/// let producers = try [1, 2].map { try ChildProcess(Put(queue: queue, value: $0)) }
/// for producer in producers { try producer.start() }
/// print(try queue.get(), try queue.get())   // 1 2, in some order
/// ```
public final class ProcessQueue<Element: Codable & Sendable>: Sendable, Codable {
    let memory: SharedMemory
    /// Sockets that carry the descriptors of large values: producers send on
    /// the first, consumers receive on the second.
    private let tickets: Connection
    private let sockets: (send: Int32, receive: Int32)
    /// The largest encoded value this handle puts or gets; `Int.max`: no limit.
    private let sizeLimit: Int

    private var header: UnsafeMutablePointer<mp_queue> {
        memory.baseAddress.assumingMemoryBound(to: mp_queue.self)
    }

    /// The largest value kept in the ring itself.
    private var inlineLimit: Int { Int(header.pointee.capacity) / 4 }

    /// The largest value, in encoded bytes, that this handle on the queue
    /// puts or gets; `nil`: no limit.
    ///
    /// A put of a larger value throws `.messageTooLarge` and queues nothing.
    /// A get that meets a larger value (put through a handle with a larger
    /// limit, see ``init(_:maximumMessageSize:)``) discards it without
    /// allocating or mapping its bytes, counts it as done for ``join(timeout:)-3kbz4``,
    /// and throws `.messageTooLarge`. A handle that travels to a child keeps its limit.
    public var maximumMessageSize: Int? { sizeLimit == .max ? nil : sizeLimit }

    /// Creates a queue.
    ///
    /// - Parameters:
    ///   - maxCount: At most this many values wait in the queue; a put blocks
    ///     (or throws `.full`) beyond. `nil`: no limit but the ring's size,
    ///     and for values too large for the ring, the few hundred segment
    ///     descriptors the queue's socket holds until gets take them.
    ///   - bufferSize: The ring's size in bytes.
    ///   - maximumMessageSize: The largest value, in encoded bytes, that this
    ///     handle puts or gets (``maximumMessageSize``); `nil`: no limit.
    /// - Throws: `.invalidArgument` for a `maxCount` or a `maximumMessageSize`
    ///   below 1 or a `bufferSize` below 4096; `.systemCall` when the shared
    ///   memory or the sockets cannot be made.
    public init(maxCount: Int? = nil, bufferSize: Int = 1 << 20, maximumMessageSize: Int? = nil) throws {
        guard maxCount.map({ $0 >= 1 }) ?? true, bufferSize >= 4096 else {
            throw MultiprocessingError(
                .invalidArgument,
                "a queue needs maxCount >= 1 and bufferSize >= 4096 (got \(String(describing: maxCount)), \(bufferSize))"
            )
        }
        sizeLimit = try Self.sizeLimit(maximumMessageSize)
        memory = try SharedMemory(size: MemoryLayout<mp_queue>.stride + bufferSize)
        let header = memory.baseAddress.bindMemory(to: mp_queue.self, capacity: 1)
        let result = mp_queue_init(header, UInt64(bufferSize), UInt64(maxCount ?? 0))
        if result != 0 { throw Platform.error("pthread_mutex_init", result) }
        let pair = try Platform.makeMessageSocketPair()
        sockets = (pair[0], pair[1])
        tickets = Connection(readFD: pair[1], writeFD: pair[0])
    }

    /// Another handle on the same queue, with its own maximum message size:
    /// for a process that takes values from producers it does not trust with
    /// large ones, or that puts larger values than the queue's creator allowed.
    ///
    /// - Parameters:
    ///   - queue: The queue to share.
    ///   - maximumMessageSize: The largest value, in encoded bytes, that the
    ///     new handle puts or gets; `nil`: no limit.
    /// - Throws: `.invalidArgument` for a maximum below 1.
    public init(_ queue: ProcessQueue<Element>, maximumMessageSize: Int?) throws {
        memory = queue.memory
        tickets = queue.tickets
        sockets = queue.sockets
        sizeLimit = try Self.sizeLimit(maximumMessageSize)
    }

    private static func sizeLimit(_ maximumMessageSize: Int?) throws -> Int {
        guard let maximumMessageSize else { return .max }
        guard maximumMessageSize >= 1 else {
            throw MultiprocessingError(
                .invalidArgument, "a queue's maximumMessageSize must be at least 1 byte, not \(maximumMessageSize)")
        }
        return maximumMessageSize
    }

    public init(from decoder: any Decoder) throws {
        var container = try decoder.unkeyedContainer()
        memory = try container.decode(SharedMemory.self)
        tickets = try container.decode(Connection.self)
        sockets = (tickets.writeFD, tickets.readFD)
        sizeLimit = try container.decode(Int.self)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.unkeyedContainer()
        try container.encode(memory)
        try container.encode(tickets)
        try container.encode(sizeLimit)
    }

    /// Puts a value at the end of the queue.
    ///
    /// - Parameters:
    ///   - element: The value; it is encoded now.
    ///   - timeout: How long to wait for room: `nil` waits as long as it
    ///     takes, `.zero` does not wait (Python's `block=False`).
    /// - Throws: `.encodingFailed`; `.messageTooLarge` when the encoded value
    ///   is larger than ``maximumMessageSize``; `.full` when there was no room
    ///   in time; `.closed` after ``close()``; `.shutDown` after ``shutdown(immediate:)``,
    ///   also when the put was waiting for room.
    public func put(_ element: Element, timeout: Duration? = nil) throws {
        let bytes = try WireEncoder().encode(element)
        try put(bytes: bytes, timeout: timeout)
    }

    /// Puts a value at the end of the queue, waiting for room without blocking a cooperative thread.
    ///
    /// - Parameter element: The value; it is encoded now.
    /// - Throws: As ``put(_:timeout:)``.
    public func put(_ element: Element) async throws {
        let bytes = try WireEncoder().encode(element)
        try await BlockingThreads.run { try self.put(bytes: bytes, timeout: nil) }
    }

    private func put(bytes: [UInt8], timeout: Duration?) throws {
        guard bytes.count <= sizeLimit else { throw Self.tooLarge(bytes.count, limit: sizeLimit, discarded: false) }
        let nanoseconds = Platform.timeoutNanoseconds(timeout)
        let result: Int32
        if bytes.count > inlineLimit {
            let segment = try SharedMemory(size: max(1, bytes.count))
            bytes.withUnsafeBytes { segment.bytes.copyMemory(from: $0) }
            result = mp_queue_put(header, nil, UInt64(bytes.count), sockets.send, segment.fd, nanoseconds)
        } else {
            result = bytes.withUnsafeBytes {
                mp_queue_put(header, $0.baseAddress, UInt64($0.count), sockets.send, -1, nanoseconds)
            }
        }
        switch result {
        case 0: return
        case ETIMEDOUT: throw MultiprocessingError(.full, "the queue stayed full for \(timeout ?? .zero)")
        case EPIPE: throw MultiprocessingError(.closed, "the queue is closed")
        case ESHUTDOWN: throw MultiprocessingError(.shutDown, "the queue is shut down: it takes no more values")
        default: throw Platform.error("a queue put", result)
        }
    }

    private static func tooLarge(_ size: Int, limit: Int, discarded: Bool) -> MultiprocessingError {
        MultiprocessingError(
            .messageTooLarge,
            discarded
                ? "a get met a value of \(size) bytes, more than this handle's maximumMessageSize of \(limit): "
                    + "it was discarded, and counts as done"
                : "a value of \(size) encoded bytes is more than this queue's maximumMessageSize of \(limit)")
    }

    /// Takes the value at the front of the queue.
    ///
    /// - Parameter timeout: How long to wait for a value: `nil` waits as long
    ///   as it takes, `.zero` does not wait.
    /// - Throws: `.empty` when no value came in time; `.endOfStream` when the
    ///   queue is closed and empty; `.shutDown` when it is shut down and empty
    ///   (at once after an immediate shutdown, also for a get that was
    ///   waiting); `.messageTooLarge` when the value is larger than
    ///   ``maximumMessageSize`` (it is discarded); `.decodingFailed` when the
    ///   value is not an `Element`.
    public func get(timeout: Duration? = nil) throws -> Element {
        try take(timeout: timeout)
    }

    /// Takes the value at the front of the queue, waiting without blocking a cooperative thread.
    ///
    /// - Returns: The value.
    /// - Throws: As ``get(timeout:)``.
    public func get() async throws -> Element {
        try await BlockingThreads.run { try self.take(timeout: nil) }
    }

    /// Small values are copied out of the ring onto the stack and decoded from there.
    private static var stackLimit: Int { 256 }

    private func take(timeout: Duration?) throws -> Element {
        try withUnsafeTemporaryAllocation(byteCount: Self.stackLimit, alignment: 16) { buffer in
            var bytes: UnsafeMutableRawPointer?
            var length: UInt64 = 0
            var fd: Int32 = -1
            let result = mp_queue_get(
                header, buffer.baseAddress, UInt64(buffer.count), UInt64(sizeLimit), &bytes, &length,
                sockets.receive, &fd, Platform.timeoutNanoseconds(timeout))
            switch result {
            case 0: break
            case ETIMEDOUT: throw MultiprocessingError(.empty, "the queue stayed empty for \(timeout ?? .zero)")
            case EPIPE: throw MultiprocessingError(.endOfStream, "the queue is closed and empty")
            case ESHUTDOWN: throw MultiprocessingError(.shutDown, "the queue is shut down and empty")
            case EMSGSIZE: throw Self.tooLarge(Int(clamping: length), limit: sizeLimit, discarded: true)
            case EBADMSG:
                throw MultiprocessingError(
                    .decodingFailed,
                    "the queue's next record claims more bytes than the queue holds: its memory was overwritten")
            default: throw Platform.error("a queue get", result)
            }
            if fd >= 0 {
                let segment: SharedMemory
                do {
                    segment = try SharedMemory(adopting: fd, size: max(1, Int(length)))
                } catch {
                    Platform.close(fd)
                    throw error
                }
                return try WireDecoder().decode(
                    Element.self, from: UnsafeRawBufferPointer(rebasing: segment.bytes[..<Int(length)]))
            }
            defer { if bytes != buffer.baseAddress { free(bytes) } }
            return try WireDecoder().decode(
                Element.self, from: UnsafeRawBufferPointer(start: bytes, count: Int(length)))
        }
    }

    /// The number of values waiting (Python's `qsize()`).
    public var count: Int { Int(mp_queue_count(header)) }

    /// Whether no value is waiting.
    public var isEmpty: Bool { count == 0 }

    /// Whether a put would have to wait for room for one more value.
    public var isFull: Bool {
        let maxCount = Int(header.pointee.max_count)
        return maxCount > 0 && count >= maxCount
    }

    /// Closes the queue: later puts throw `.closed`; gets take what is left,
    /// then throw `.endOfStream`. Every process sharing the queue sees it.
    public func close() {
        _ = mp_queue_end(header, EPIPE, 0, sockets.receive)
    }

    /// Shuts the queue down, in every process that shares it (Python 3.13's
    /// `Queue.shutdown`).
    ///
    /// Afterwards every put throws `.shutDown`, and so does every put that
    /// was waiting for room, in any process. Gets take the values left and
    /// then throw `.shutDown`; getters waiting on the empty queue are woken
    /// and throw at once. ``taskDone()`` and ``join(timeout:)-3kbz4`` go on
    /// working: a pending join returns once every value put has been marked
    /// done. A ``close()`` afterwards leaves the queue shut down.
    ///
    /// - Parameter immediate: Whether to discard the values still queued,
    ///   so that gets throw at once. Discarded values count as done, as in
    ///   Python: a join waits only for values a get has taken.
    public func shutdown(immediate: Bool = false) {
        _ = mp_queue_end(header, ESHUTDOWN, immediate ? 1 : 0, sockets.receive)
    }

    /// Marks one value taken with get as processed (Python's `task_done()`).
    ///
    /// - Throws: `.invalidArgument` when called more times than values were put.
    public func taskDone() throws {
        let result = mp_queue_task_done(header)
        if result == EINVAL {
            throw MultiprocessingError(.invalidArgument, "taskDone() called more times than values were put")
        }
        if result != 0 { throw Platform.error("taskDone", result) }
    }

    /// Waits until every value put has been marked done with ``taskDone()`` (Python's `join()`).
    ///
    /// - Returns: `false` when `timeout` passed first.
    @discardableResult
    public func join(timeout: Duration? = nil) throws -> Bool {
        try waitUntilDone(timeout: timeout)
    }

    /// Waits until every value put has been marked done, without blocking a cooperative thread.
    ///
    /// - Returns: `false` when `timeout` passed first.
    @discardableResult
    public func join(timeout: Duration?) async throws -> Bool {
        try await BlockingThreads.run { try self.waitUntilDone(timeout: timeout) }
    }

    /// Waits until every value put has been marked done, without blocking a cooperative thread.
    public func join() async throws {
        try await join(timeout: nil)
    }

    private func waitUntilDone(timeout: Duration?) throws -> Bool {
        let result = mp_queue_join(header, Platform.timeoutNanoseconds(timeout))
        if result == ETIMEDOUT { return false }
        if result != 0 { throw Platform.error("a queue join", result) }
        return true
    }

}
