/// Once per worker, before its first task: loads what every task of that
/// worker may use (a model, an open file, a connection to a C library).
///
/// ```swift
/// struct LoadModel: WorkerInitializer {
///     var path: String
///     func makeState() throws -> Model { try Model(contentsOf: path) }
/// }
/// // in a task or function, in the worker:
/// let model = PoolWorker.state(as: Model.self)!
/// ```
///
/// If it throws, the pool stops starting workers and every waiting and later
/// call fails with `.initializerFailed`, carrying the error: a broken
/// initializer is reported once, clearly, rather than retried forever.
public protocol WorkerInitializer: Codable, Sendable {
    /// What ``makeState()`` returns; tasks get it with ``PoolWorker/state(as:)``.
    associatedtype State

    /// Runs once in each worker process, before its first task.
    func makeState() async throws -> State
}

/// What a task running in a pool worker can know about its worker.
public enum PoolWorker {
    nonisolated(unsafe) static var currentIndex: Int?
    nonisolated(unsafe) static var currentState: Any?

    /// The worker's index in its pool (0 ..< workers), or `nil` outside a pool worker.
    /// A replacement worker takes the index of the worker it replaces.
    public static var index: Int? { currentIndex }

    /// The state the pool's ``WorkerInitializer`` made in this worker, or `nil`
    /// if there is none or it is not a `S`.
    public static func state<S>(as type: S.Type) -> S? { currentState as? S }
}

/// A pool's ``WorkerInitializer`` on its way to each worker, inside the
/// worker's task value: encoded with it (so shared memory, queues and locks
/// in the initializer travel with their descriptors) and found again in
/// the worker by its runner's type name.
struct PoolInitializer: Codable, @unchecked Sendable {
    // @unchecked: `initializer` is a Sendable WorkerInitializer, set once.
    let runnerType: String
    /// In the parent, the user's initializer; in the worker, the decoded one,
    /// or `nil` when its type cannot be found (reported when the worker starts).
    private let initializer: (any WorkerInitializer)?
    private let decodingError: MultiprocessingError?

    init<I: WorkerInitializer>(_ initializer: I) throws {
        runnerType = try TaskName.resolvable(InitializerRunner<I>.self)
        self.initializer = initializer
        decodingError = nil
    }

    func encode(to encoder: any Encoder) throws {
        var container = encoder.unkeyedContainer()
        try container.encode(runnerType)
        if let initializer { try container.encode(initializer) }
    }

    init(from decoder: any Decoder) throws {
        var container = try decoder.unkeyedContainer()
        runnerType = try container.decode(String.self)
        guard let runner = _typeByName(runnerType) as? any InitializerRunning.Type else {
            initializer = nil
            decodingError = MultiprocessingError(
                .unresolvableTask, "the pool worker cannot find the initializer type '\(runnerType)'")
            return
        }
        initializer = try runner.decode(from: &container)
        decodingError = nil
    }

    /// Runs the initializer, in the worker.
    func makeState() async throws -> Any {
        guard let initializer else { throw decodingError! }
        return try await initializer.makeState()
    }
}

protocol InitializerRunning {
    static func decode(from container: inout any UnkeyedDecodingContainer) throws -> any WorkerInitializer
}

/// Finds a ``WorkerInitializer`` type again in a worker, by this type's mangled name.
enum InitializerRunner<I: WorkerInitializer>: InitializerRunning {
    static func decode(from container: inout any UnkeyedDecodingContainer) throws -> any WorkerInitializer {
        try container.decode(I.self)
    }
}
