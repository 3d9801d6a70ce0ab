/// A chunk inside the engine: what it is, what has come back of it, and who
/// is told when it is complete. Touched only with the engine's lock held.
final class EngineChunk {
    let kind: PoolWorkKind
    let payload: [UInt8]
    let items: Int
    let firstItem: Int?
    let group: PoolGroup
    /// Owned by the chunk; closed when it completes.
    private(set) var descriptors: [Int32]
    /// `nil` once called.
    private var completion: (@Sendable (ChunkResult) -> Void)?
    /// What has come back. Pieces arrive in item order from one worker,
    /// but the parts of a chunk that ran again after a worker died may
    /// finish on different workers, in any order.
    private var pieces: [ChunkResult.Piece] = []
    private var covered = 0
    private var nanoseconds: UInt64 = 0
    /// Times a worker died while holding the chunk without any item to blame
    /// (between items): after a few the next item is blamed, so that a chunk
    /// that kills every worker cannot circle forever.
    var unblamedDeaths = 0
    var cancelled = false

    init(_ chunk: PoolChunk) {
        kind = chunk.kind
        payload = chunk.payload
        items = chunk.items
        firstItem = chunk.firstItem
        group = chunk.group
        descriptors = chunk.descriptors
        completion = chunk.completion
    }

    var isComplete: Bool { completion == nil }

    /// Files a piece; no two pieces cover the same item.
    func add(_ piece: ChunkResult.Piece, nanoseconds: UInt64 = 0) {
        pieces.append(piece)
        covered += piece.range.count
        self.nanoseconds &+= nanoseconds
    }

    /// Whether every item has its result.
    var isCovered: Bool { covered == items }

    /// Fills what is missing with `error` and takes the completion out, with
    /// its result, to be called once the engine's lock is released.
    func complete(failingRestWith error: (any Error)? = nil) -> (@Sendable (ChunkResult) -> Void, ChunkResult)? {
        guard let completion else { return nil }
        if pieces.count > 1 { pieces.sort { $0.range.lowerBound < $1.range.lowerBound } }
        if covered < items {
            // Fill the gaps between the pieces that came back.
            var filled: [ChunkResult.Piece] = []
            var next = 0
            for piece in pieces {
                if piece.range.lowerBound > next {
                    filled.append(.failed(next..<piece.range.lowerBound, error ?? CancellationError()))
                }
                filled.append(piece)
                next = piece.range.upperBound
            }
            if next < items { filled.append(.failed(next..<items, error ?? CancellationError())) }
            pieces = filled
            covered = items
        }
        self.completion = nil
        for fd in descriptors { Platform.close(fd) }
        descriptors = []
        return (completion, ChunkResult(pieces: pieces, nanoseconds: nanoseconds))
    }

    /// Names the work in errors: "Square, items 10..<20", or "Square, item 12".
    func label(items range: Range<Int>? = nil) -> String {
        guard let firstItem else { return kind.label }
        let range = range ?? 0..<items
        if range.count == 1 { return "\(kind.label), item \(firstItem + range.lowerBound)" }
        return "\(kind.label), items \(firstItem + range.lowerBound)..<\(firstItem + range.upperBound)"
    }
}

/// Items of a chunk given to a worker in one work message.
struct EngineJob {
    let id: UInt64
    let chunk: EngineChunk
    /// The items to run, indices within the chunk.
    let range: Range<Int>
    /// The first item whose result has not come back.
    var next: Int
    /// Whether its chunk's descriptors went to the worker with it.
    var carriesDescriptors = false
    /// When the job was written to its worker or its last result came back
    /// (monotonic nanoseconds): when the next item's time starts, until the
    /// worker records that item's start.
    var waitingSince: UInt64 = 0

    init(id: UInt64, chunk: EngineChunk, range: Range<Int>) {
        self.id = id
        self.chunk = chunk
        self.range = range
        next = range.lowerBound
    }
}

/// One worker of the engine, and what it holds.
final class WorkerSlot {
    enum State: Equatable {
        /// Started; its ready message has not come yet (work may be queued to it).
        case starting
        case running
        /// Told to stop, or announced it retires: it takes no more work.
        case stopping
        /// Its item ran past the timeout: sent SIGTERM, and SIGKILL at `killAt` if still alive.
        case timedOut(item: Int, killAt: UInt64)
    }

    let index: Int
    let process: ChildProcess<Void>
    let work: Connection
    let results: Connection
    let ring: ResultRing
    let descriptors: DescriptorSocket
    let status: _ItemStatus
    let exitFD: Int32
    var state = State.starting
    /// The jobs written to the worker, in the order it runs them.
    var inFlight = FrontQueue<EngineJob>()
    /// The items of the jobs in flight.
    var inFlightItems = 0
    /// Jobs in flight that carry descriptors (the socket holds few messages).
    var inFlightWithDescriptors = 0
    var outbox = Outbox()
    /// The work type of the last job sent: the next of the same type goes without its name.
    var lastTypeName: String?
    /// Items given to this worker, for recycling after `maxTasksPerWorker`.
    var assigned = 0
    /// The worker announced that it exits without running the jobs it holds.
    var retiring = false
    /// The pool killed the worker (a cancellation, a termination): its
    /// death is nobody's fault, and the jobs it held run elsewhere.
    var stoppedByPool = false
    /// Results that arrived on the pipe, waiting for their markers in the ring.
    var pipeResults = FrontQueue<[UInt8]>()
    /// Markers taken from the ring whose results have not arrived yet.
    var awaitingPipe = 0

    init(
        index: Int, process: ChildProcess<Void>, work: Connection, results: Connection, ring: ResultRing,
        descriptors: DescriptorSocket, timed: Bool
    ) {
        self.index = index
        self.process = process
        self.work = work
        self.results = results
        self.ring = ring
        self.descriptors = descriptors
        status = ring.status(timed: timed)
        exitFD = process.exitDescriptor ?? -1
    }

    var takesWork: Bool { state == .starting || state == .running }

    var isTimedOut: Bool {
        if case .timedOut = state { return true }
        return false
    }
}
