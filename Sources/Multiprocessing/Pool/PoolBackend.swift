import Synchronization

/// Where a pool's chunks run: the seam between the layer that cuts work into
/// chunks (maps, submits, progress, cancellation: ``PoolClient``) and the
/// machinery that runs them.
///
/// The local worker processes of a ``ProcessPool`` are one backend; a backend
/// that hands chunks to other machines is another. A backend runs opaque
/// chunks: a work kind named by its type (every process running the same
/// binary can find it), the wire encoding of the chunk's inputs, and a
/// completion that it calls exactly once with the chunk's ``ChunkResult``.
@_spi(PoolBackend)
public protocol PoolBackend: AnyObject, Sendable {
    /// How many chunks run at once when the backend is busy; maps size their
    /// windows of chunks in flight by it.
    var workerCount: Int { get }

    /// Queues chunks in order. Each chunk's completion is called exactly once,
    /// on a thread of the backend's (or, for a chunk cancelled before it
    /// started, on the caller's), and must return quickly.
    ///
    /// - Throws: `.closed` once the backend takes no more work; then nothing is queued.
    func submit(_ chunks: [PoolChunk]) throws

    /// Cancels the unfinished chunks of `group`: queued ones complete at once
    /// with `CancellationError`; running ones are abandoned (they complete with
    /// `CancellationError`), and the workers running them are stopped when
    /// `stopRunning` is true.
    func cancel(_ group: PoolGroup, stopRunning: Bool)

    /// Items of `group` that have finished inside chunks that have not
    /// completed yet, for progress reports between chunks.
    func partialItems(of group: PoolGroup) -> Int

    /// Takes no new chunks. With `cancelPending`, chunks not yet started
    /// complete with `CancellationError` and running ones finish; otherwise
    /// everything queued runs. The backend ends once nothing is left.
    func close(cancelPending: Bool)

    /// Stops now: every unfinished chunk fails with `.closed`.
    func terminate()

    /// Blocks until the backend has ended and released its resources.
    func waitUntilEnded()

    /// Called by a caller about to wait for a result: a backend whose results
    /// arrive within microseconds may look for them on the caller's thread
    /// for a moment, returning as soon as `isDone()` is true (or it gives
    /// up), so that a short task costs no extra wake-up. Optional.
    func waitBriefly(until isDone: () -> Bool)
}

extension PoolBackend {
    public func waitBriefly(until isDone: () -> Bool) {}
}

/// A set of chunks cancelled together: a map, or one submitted task.
@_spi(PoolBackend)
public struct PoolGroup: Hashable, Sendable, CustomStringConvertible {
    /// Unique in this process.
    public let rawValue: UInt64

    private static let counter = Atomic<UInt64>(0)

    /// A group that no other has been given in this process.
    public static func make() -> PoolGroup {
        PoolGroup(rawValue: counter.add(1, ordering: .relaxed).newValue)
    }

    public var description: String { "group \(rawValue)" }
}

/// What kind of work a chunk holds: the type a worker runs it with, and the
/// name errors give it.
@_spi(PoolBackend)
public struct PoolWorkKind: Hashable, Sendable {
    /// The mangled name of the chunk's `PoolWork` type, such as the
    /// `FunctionChunk` of a ``ProcessFunction``.
    public var typeName: String
    /// The user's type, as errors name it: "Square".
    public var label: String

    /// A kind of work.
    public init(typeName: String, label: String) {
        self.typeName = typeName
        self.label = label
    }
}

/// One chunk of work for a ``PoolBackend``.
@_spi(PoolBackend)
public struct PoolChunk: Sendable {
    /// The work's kind.
    public var kind: PoolWorkKind
    /// The wire encoding of the chunk's inputs: an array of `items` values.
    public var payload: [UInt8]
    /// Descriptors the payload refers to (shared memory, queues, locks,
    /// connections inside the inputs), owned by the chunk: the backend hands
    /// them to the worker and closes them when the chunk completes. A
    /// backend that cannot hand descriptors over refuses such a chunk.
    public var descriptors: [Int32]
    /// How many inputs the payload holds.
    public var items: Int
    /// The index of the chunk's first item in its map, for errors; `nil` for a submitted task.
    public var firstItem: Int?
    /// The group the chunk belongs to.
    public var group: PoolGroup
    /// Called once with the chunk's result.
    public var completion: @Sendable (ChunkResult) -> Void

    /// A chunk.
    public init(
        kind: PoolWorkKind, payload: [UInt8], descriptors: [Int32], items: Int, firstItem: Int?, group: PoolGroup,
        completion: @escaping @Sendable (ChunkResult) -> Void
    ) {
        self.kind = kind
        self.payload = payload
        self.descriptors = descriptors
        self.items = items
        self.firstItem = firstItem
        self.group = group
        self.completion = completion
    }
}

/// What became of a chunk: pieces that cover its items in order.
///
/// A chunk that ran in one go is one piece. A chunk whose worker died in
/// its middle is several: the items before, run again; the item that was
/// running, failed; the items after, run again. Pieces hold encoded values,
/// decoded by the caller, who knows their type.
@_spi(PoolBackend)
public struct ChunkResult: Sendable {
    /// Results for a range of a chunk's items (indices within the chunk).
    public enum Piece: Sendable {
        /// Every item succeeded: the wire encoding of their outputs, an array.
        case values(Range<Int>, ArraySlice<UInt8>)
        /// One outcome per item: the wire encoding of an array of `Outcome`.
        case outcomes(Range<Int>, ArraySlice<UInt8>)
        /// Every item failed with this error.
        case failed(Range<Int>, any Error)

        /// The items the piece covers.
        public var range: Range<Int> {
            switch self {
            case .values(let range, _), .outcomes(let range, _), .failed(let range, _): range
            }
        }
    }

    /// The pieces, in item order, covering `0..<items` of the chunk.
    public var pieces: [Piece]
    /// Time the workers spent computing it.
    public var nanoseconds: UInt64

    /// A result made of pieces.
    public init(pieces: [Piece], nanoseconds: UInt64) {
        self.pieces = pieces
        self.nanoseconds = nanoseconds
    }

    /// A chunk of `items` items that all failed with `error`.
    public static func failed(items: Int, _ error: any Error) -> ChunkResult {
        ChunkResult(pieces: [.failed(0..<items, error)], nanoseconds: 0)
    }

    /// The result as bytes, for a backend that stores or forwards it; errors
    /// travel as `Codable` errors do between processes.
    public func encoded() throws -> [UInt8] {
        try WireEncoder().encode(EncodedChunkResult(self))
    }

    /// A result from ``encoded()``'s bytes.
    ///
    /// - Throws: `.decodingFailed` for bytes that are not a chunk result.
    public init(encoded bytes: [UInt8]) throws {
        self = try WireDecoder().decode(EncodedChunkResult.self, from: bytes).result
    }
}

/// The Codable form of a ``ChunkResult``.
private struct EncodedChunkResult: Codable {
    struct Piece: Codable {
        var lower: Int
        var upper: Int
        /// 0 values, 1 outcomes, 2 failed.
        var kind: UInt8
        var bytes: [UInt8]
    }

    var pieces: [Piece]
    var nanoseconds: UInt64

    init(_ result: ChunkResult) throws {
        nanoseconds = result.nanoseconds
        pieces = try result.pieces.map { piece in
            switch piece {
            case .values(let range, let bytes):
                Piece(lower: range.lowerBound, upper: range.upperBound, kind: 0, bytes: Array(bytes))
            case .outcomes(let range, let bytes):
                Piece(lower: range.lowerBound, upper: range.upperBound, kind: 1, bytes: Array(bytes))
            case .failed(let range, let error):
                Piece(
                    lower: range.lowerBound, upper: range.upperBound, kind: 2,
                    bytes: try WireEncoder().encode(ErrorEnvelope(error, processName: ProcessIdentity.current.name)))
            }
        }
    }

    var result: ChunkResult {
        get throws {
            var expected = 0
            let decoded: [ChunkResult.Piece] = try pieces.map { piece in
                guard piece.lower == expected, piece.upper > piece.lower else {
                    throw MultiprocessingError(.decodingFailed, "a chunk result's pieces do not follow each other")
                }
                expected = piece.upper
                let range = piece.lower..<piece.upper
                switch piece.kind {
                case 0: return .values(range, piece.bytes[...])
                case 1: return .outcomes(range, piece.bytes[...])
                case 2: return .failed(range, try WireDecoder().decode(ErrorEnvelope.self, from: piece.bytes).error)
                default: throw MultiprocessingError(.decodingFailed, "a chunk result piece of kind \(piece.kind)")
                }
            }
            return ChunkResult(pieces: decoded, nanoseconds: nanoseconds)
        }
    }
}
