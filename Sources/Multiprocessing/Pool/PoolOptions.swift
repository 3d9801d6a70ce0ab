import Logging

/// How a ``ProcessPool`` runs its workers.
public struct PoolOptions: Sendable {
    /// How workers are started. Pools of task values and functions use
    /// ``StartMethod/forkserver`` or ``StartMethod/spawn``.
    public var startMethod: StartMethod
    /// How long one item may run: each item of a map, each submitted task.
    /// A worker whose item runs longer is sent SIGTERM, then SIGKILL after
    /// ``gracePeriod`` (with everything it started: workers lead their own
    /// process group); the item fails with `.timedOut`, the other items of its
    /// chunk run again, and the worker is replaced. `nil`: no limit. With a
    /// timeout each item's result is sent as soon as it is done.
    public var taskTimeout: Duration?
    /// Between SIGTERM and SIGKILL when a worker is stopped.
    public var gracePeriod: Duration
    /// A worker is replaced by a fresh one after this many items (Python's
    /// `maxtasksperchild`), which bounds what a leaking task can accumulate.
    /// At least 1.
    public var maxTasksPerWorker: Int?
    /// A worker whose resident memory has grown past this many bytes after a
    /// chunk retires and is replaced by a fresh one; the chunks it had not
    /// started go to other workers. `nil`: no limit.
    public var maxWorkerMemory: Int?
    /// Where the pool says what it does on its own: workers that died and
    /// were replaced, items stopped at their timeout (warnings), workers
    /// recycled (info), workers started (debug), a failed initializer (error),
    /// each with the worker's pid and index, the work and the item in the
    /// metadata. `nil` (the default): silent.
    public var logger: Logger?

    /// Creates options.
    public init(
        startMethod: StartMethod = .default, taskTimeout: Duration? = nil, gracePeriod: Duration = .milliseconds(500),
        maxTasksPerWorker: Int? = nil, maxWorkerMemory: Int? = nil, logger: Logger? = nil
    ) {
        self.startMethod = startMethod
        self.taskTimeout = taskTimeout
        self.gracePeriod = gracePeriod
        self.maxTasksPerWorker = maxTasksPerWorker
        self.maxWorkerMemory = maxWorkerMemory
        self.logger = logger
    }
}
