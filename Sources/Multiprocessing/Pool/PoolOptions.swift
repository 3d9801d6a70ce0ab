/// How a ``ProcessPool`` runs its workers.
public struct PoolOptions: Sendable {
    /// How workers are started. Pools of task values and functions use
    /// ``StartMethod/forkserver`` or ``StartMethod/spawn``.
    public var startMethod: StartMethod
    /// How long one item may run. A worker whose item runs longer is sent
    /// SIGTERM, then SIGKILL after ``gracePeriod`` (with everything it
    /// started: workers lead their own process group); the item fails with
    /// `.timedOut` and the worker is replaced. `nil`: no limit. A chunk of n
    /// items may run n times this long.
    public var taskTimeout: Duration?
    /// Between SIGTERM and SIGKILL when a worker is stopped.
    public var gracePeriod: Duration
    /// A worker is replaced by a fresh one after this many items (Python's
    /// `maxtasksperchild`), which bounds what a leaking task can accumulate.
    public var maxTasksPerWorker: Int?
    /// A worker whose resident memory has grown past this many bytes after a
    /// chunk retires and is replaced by a fresh one; the chunks it had not
    /// started go to other workers. `nil`: no limit.
    public var maxWorkerMemory: Int?

    /// Creates options.
    public init(
        startMethod: StartMethod = .default, taskTimeout: Duration? = nil, gracePeriod: Duration = .milliseconds(500),
        maxTasksPerWorker: Int? = nil, maxWorkerMemory: Int? = nil
    ) {
        self.startMethod = startMethod
        self.taskTimeout = taskTimeout
        self.gracePeriod = gracePeriod
        self.maxTasksPerWorker = maxTasksPerWorker
        self.maxWorkerMemory = maxWorkerMemory
    }
}
