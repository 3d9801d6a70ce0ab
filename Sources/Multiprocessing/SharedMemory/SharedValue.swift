/// A value of a trivial type in shared memory (Python's `multiprocessing.Value`).
///
/// ```swift
/// let counter = try SharedValue(0)
/// // in each of several children:
/// try counter.withLock { $0 += 1 }
/// ```
///
/// `value` reads and writes without the lock; ``withLock(_:)-n8a7`` is the way to
/// update it from several processes.
public final class SharedValue<Value: BitwiseCopyable>: Sendable, Codable {
    let memory: SharedMemory
    /// The lock that ``withLock(_:)-n8a7`` takes; `nil` when made with `locked: false`.
    public let lock: ProcessLock?

    /// Creates a shared value.
    ///
    /// - Parameters:
    ///   - initial: The value to start with.
    ///   - locked: Whether to make a lock for ``withLock(_:)-n8a7`` (Python's `lock=True`, the default).
    public init(_ initial: Value, locked: Bool = true) throws {
        memory = try SharedMemory(size: max(1, MemoryLayout<Value>.stride))
        memory.baseAddress.initializeMemory(as: Value.self, to: initial)
        lock = locked ? try ProcessLock() : nil
    }

    /// Updates the value holding its lock, from async code without blocking a
    /// cooperative thread (the update runs on one of the library's blocking threads).
    public func withLock<R: Sendable>(_ body: @escaping @Sendable (inout Value) throws -> R) async throws -> R {
        try await BlockingThreads.run { try self.withLock(body) }
    }

    /// The value, read or written without the lock.
    public var value: Value {
        get { memory.baseAddress.load(as: Value.self) }
        set { memory.baseAddress.storeBytes(of: newValue, as: Value.self) }
    }

    /// Updates the value holding its lock.
    ///
    /// - Throws: `.invalidArgument` for a value made with `locked: false`.
    public func withLock<R>(_ body: (inout Value) throws -> R) throws -> R {
        guard let lock else {
            throw MultiprocessingError(.invalidArgument, "this SharedValue was made without a lock")
        }
        return try lock.withLock { _ in
            try body(&memory.baseAddress.assumingMemoryBound(to: Value.self).pointee)
        }
    }
}

/// An array of a trivial type in shared memory (Python's `multiprocessing.Array`).
///
/// Its elements are read and written in place by every process that has it;
/// ``withLock(_:)`` gives exclusive access to all of them.
public final class SharedArray<Element: BitwiseCopyable>: Sendable, Codable {
    let memory: SharedMemory
    /// The number of elements.
    public let count: Int
    /// The lock that ``withLock(_:)`` takes; `nil` when made with `locked: false`.
    public let lock: ProcessLock?

    /// Creates an array of `count` copies of `element`.
    public init(repeating element: Element, count: Int, locked: Bool = true) throws {
        guard count >= 0 else { throw MultiprocessingError(.invalidArgument, "a negative count: \(count)") }
        memory = try SharedMemory(size: max(1, count * MemoryLayout<Element>.stride))
        memory.baseAddress.initializeMemory(as: Element.self, repeating: element, count: count)
        self.count = count
        lock = locked ? try ProcessLock() : nil
    }

    /// Creates an array holding `elements`.
    public init(_ elements: [Element], locked: Bool = true) throws {
        let memory = try SharedMemory(size: max(1, elements.count * MemoryLayout<Element>.stride))
        elements.withUnsafeBytes { bytes in
            if let source = bytes.baseAddress { memory.baseAddress.copyMemory(from: source, byteCount: bytes.count) }
        }
        self.memory = memory
        count = elements.count
        lock = locked ? try ProcessLock() : nil
    }

    /// An element, read or written without the lock.
    public subscript(index: Int) -> Element {
        get {
            precondition(index >= 0 && index < count, "index \(index) out of range 0..<\(count)")
            return memory.baseAddress.load(fromByteOffset: index * MemoryLayout<Element>.stride, as: Element.self)
        }
        set {
            precondition(index >= 0 && index < count, "index \(index) out of range 0..<\(count)")
            memory.baseAddress.storeBytes(
                of: newValue, toByteOffset: index * MemoryLayout<Element>.stride, as: Element.self)
        }
    }

    /// The elements as a buffer, for bulk work, without the lock.
    public func withUnsafeMutableBufferPointer<R>(_ body: (UnsafeMutableBufferPointer<Element>) throws -> R) rethrows
        -> R
    {
        try body(
            UnsafeMutableBufferPointer(start: memory.baseAddress.assumingMemoryBound(to: Element.self), count: count))
    }

    /// Runs `body` with exclusive access to the elements.
    ///
    /// - Throws: `.invalidArgument` for an array made with `locked: false`.
    @available(*, noasync, message: "Blocks the calling thread while it waits for the lock")
    public func withLock<R>(_ body: (UnsafeMutableBufferPointer<Element>) throws -> R) throws -> R {
        guard let lock else {
            throw MultiprocessingError(.invalidArgument, "this SharedArray was made without a lock")
        }
        return try lock.withLock { _ in try withUnsafeMutableBufferPointer(body) }
    }
}
