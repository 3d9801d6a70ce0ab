/// The simplest queue (Python's `SimpleQueue`): put, get, isEmpty, close and
/// shutdown, without a size limit, timeouts or task accounting. It keeps its
/// values in the same kind of shared ring as ``ProcessQueue``.
public struct SimpleProcessQueue<Element: Codable & Sendable>: Sendable, Codable {
    private let queue: ProcessQueue<Element>

    /// Creates an empty queue.
    ///
    /// - Parameter maximumMessageSize: The largest encoded value, in bytes,
    ///   that this queue accepts, as for ``ProcessQueue``; `nil`: no limit.
    /// - Throws: `.invalidArgument` for a maximum below 1; `.systemCall` when
    ///   the shared memory cannot be made.
    public init(maximumMessageSize: Int? = nil) throws {
        queue = try ProcessQueue(maximumMessageSize: maximumMessageSize)
    }

    /// Puts a value at the end.
    ///
    /// - Throws: `.encodingFailed`; `.messageTooLarge` above the maximum
    ///   message size; `.closed` after ``close()``; `.shutDown` after ``shutdown(immediate:)``.
    public func put(_ element: Element) throws { try queue.put(element) }

    /// Puts a value at the end without blocking a cooperative thread.
    ///
    /// - Throws: As ``put(_:)``.
    public func put(_ element: Element) async throws { try await queue.put(element) }

    /// Takes the value at the front, waiting as long as it takes.
    ///
    /// - Throws: `.endOfStream` once the queue is closed and empty;
    ///   `.shutDown` once it is shut down and empty; `.messageTooLarge` for a
    ///   value above the maximum message size (it is discarded).
    public func get() throws -> Element { try queue.get() }

    /// Takes the value at the front without blocking a cooperative thread.
    ///
    /// - Throws: As ``get()``.
    public func get() async throws -> Element { try await queue.get() }

    /// Whether no value is waiting.
    public var isEmpty: Bool { queue.isEmpty }

    /// Closes the queue: puts fail; gets take what is left, then end.
    public func close() { queue.close() }

    /// Shuts the queue down, in every process, as ``ProcessQueue/shutdown(immediate:)`` does.
    ///
    /// - Parameter immediate: Whether to discard the values still queued.
    public func shutdown(immediate: Bool = false) { queue.shutdown(immediate: immediate) }
}
