/// The one error type the library throws for its own failures.
///
/// Errors thrown by task code in a child are not wrapped: a `Codable` error
/// arrives in the parent as its own type, any other error as ``RemoteError``.
/// Everything the library itself detects (a system call that failed, a task
/// type a child cannot find, a closed connection, bytes that do not decode)
/// is a `MultiprocessingError` whose ``code`` says which kind of failure it is
/// and whose ``message`` says what happened.
public struct MultiprocessingError: Error, Hashable, Sendable, Codable, CustomStringConvertible {
    /// The kind of failure. New codes may be added in later versions, so
    /// `switch` over it with a `default` case.
    public struct Code: Hashable, Sendable, Codable, CustomStringConvertible {
        @usableFromInline let rawValue: String
        init(_ rawValue: String) { self.rawValue = rawValue }
        public var description: String { rawValue }

        public init(from decoder: any Decoder) throws {
            self.init(try decoder.singleValueContainer().decode(String.self))
        }

        public func encode(to encoder: any Encoder) throws {
            var container = encoder.singleValueContainer()
            try container.encode(rawValue)
        }

        /// A system call failed; ``MultiprocessingError/errno`` holds the C error number.
        public static let systemCall = Code("systemCall")
        /// An argument is out of range or inconsistent with the object's state.
        public static let invalidArgument = Code("invalidArgument")
        /// A task type cannot be found by name in a child process.
        public static let unresolvableTask = Code("unresolvableTask")
        /// A value could not be encoded in the wire format.
        public static let encodingFailed = Code("encodingFailed")
        /// Bytes could not be decoded: truncated, corrupt or of another type.
        public static let decodingFailed = Code("decodingFailed")
        /// The other end of a connection was closed.
        public static let endOfStream = Code("endOfStream")
        /// The object was closed and cannot be used any more.
        public static let closed = Code("closed")
        /// The process has not been started yet.
        public static let notStarted = Code("notStarted")
        /// The process was already started; a process starts once.
        public static let alreadyStarted = Code("alreadyStarted")
        /// The process is still running.
        public static let stillRunning = Code("stillRunning")
        /// The child ended without delivering a result (killed by a signal,
        /// or exited without finishing its task).
        public static let processDied = Code("processDied")
        /// `fork` was refused because the calling process runs other threads.
        public static let unsafeFork = Code("unsafeFork")
        /// A wait ran out of time.
        public static let timedOut = Code("timedOut")
        /// A pool worker died (a signal, or an exit) while it ran the task;
        /// the message names the status and the task. Only that task fails.
        public static let workerDied = Code("workerDied")
        /// A queue had nothing to get in the time allowed (Python's `queue.Empty`).
        public static let empty = Code("empty")
        /// A queue had no room in the time allowed (Python's `queue.Full`).
        public static let full = Code("full")
        /// A pool's ``WorkerInitializer`` threw in a worker; the pool is broken.
        public static let initializerFailed = Code("initializerFailed")
        /// The calling thread released, or waited on, a lock it does not hold
        /// (Python's `RuntimeError` and `ValueError` for a released lock).
        public static let lockNotHeld = Code("lockNotHeld")
        /// A ``ProcessBarrier`` was broken before or while this party waited:
        /// by another party's timeout, ``ProcessBarrier/abort()``,
        /// ``ProcessBarrier/reset()`` or a failed action (Python's `BrokenBarrierError`).
        public static let brokenBarrier = Code("brokenBarrier")
        /// The queue was shut down (Python's `queue.ShutDown`).
        public static let shutDown = Code("shutDown")
        /// A value is larger than a queue's maximum message size: refused at a
        /// put, or discarded at a get.
        public static let messageTooLarge = Code("messageTooLarge")
        /// The other end of a ``Listener``'s connection did not prove it
        /// holds the same authentication key, or refused this end's proof
        /// (Python's `multiprocessing.AuthenticationError`).
        public static let authenticationFailed = Code("authenticationFailed")
        /// A cluster pool's database cannot be reached: the server is down,
        /// or the host or port is wrong.
        public static let databaseUnavailable = Code("databaseUnavailable")
        /// A cluster pool's database refused the connection: a wrong user name
        /// or password, or a database that does not exist.
        public static let databaseRefused = Code("databaseRefused")
        /// A cluster pool's schema is missing, or of a version this library
        /// does not know.
        public static let schemaMismatch = Code("schemaMismatch")
        /// A cluster chunk's nodes died running it too many times: it failed as
        /// poison instead of being run again.
        public static let nodeDied = Code("nodeDied")
    }

    /// The kind of failure.
    public var code: Code
    /// What happened, in words a user can act on.
    public var message: String
    /// The C error number, when a system call failed.
    public var errno: Int32?
    /// How the process ended, for a process or a worker that died
    /// (`.processDied`, `.workerDied`, `.timedOut` after the kill).
    public var terminationStatus: TerminationStatus?
    /// The process id of that process or worker.
    public var pid: Int32?
    /// For a pool: the index of the worker slot that ran the work.
    public var workerIndex: Int?
    /// For a map: the failed item's index in the map's input.
    public var itemIndex: Int?
    /// The name of the work that failed: the task's, function's or closure's type.
    public var work: String?
    /// The first lines of the backtrace a crashed process wrote, when it wrote one.
    public var crashReport: String?

    /// Creates an error.
    public init(_ code: Code, _ message: String, errno: Int32? = nil) {
        self.code = code
        self.message = message
        self.errno = errno
    }

    public var description: String {
        if let errno {
            return "\(message) (\(Platform.errorName(errno)))"
        }
        return message
    }
}
