#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import CMultiprocessing
import Logging
import Synchronization

/// A child process, whatever its result type (Python's `multiprocessing.Process`).
///
/// Create a ``ChildProcess``; this base class is what ``activeChildren()``
/// returns and holds everything that does not depend on the result's type.
public class AnyChildProcess: @unchecked Sendable, CustomStringConvertible {
    // @unchecked: mutable state lives in `state` (a Mutex); waiting for the
    // child is serialized by `waitLock`, which also guards the descriptors
    // that waiting reads from.

    /// The process's name, also its ``currentProcess`` name inside the child.
    public let name: String
    /// How the process is (or will be) started.
    public let startMethod: StartMethod

    struct State {
        enum Phase {
            case created
            case starting
            case running(LaunchedChild)
            case finished(pid: Int32)
            case closed
        }

        var phase: Phase = .created
        var daemon: Bool
        var printsErrors = true
        var logger: Logger?
        var outcome: Outcome?
        var crashReport: String?
        var status: TerminationStatus?
        /// Starts the child; dropped once it has, so the task's resources
        /// (its connections, its shared memory) are not kept alive for it.
        var launch: (@Sendable (ProcessIdentity) throws -> LaunchedChild)?
    }

    let state: ForkSafeMutex<State>
    /// Held by the one caller that waits for the exit and reaps the child.
    private let waitLock = ConditionLock()

    private static let counter = Atomic(0)

    init(
        name: String?, startMethod: StartMethod, daemon: Bool,
        launch: @escaping @Sendable (ProcessIdentity) throws -> LaunchedChild
    ) {
        let number = Self.counter.add(1, ordering: .relaxed).newValue
        self.name = name ?? "ChildProcess-\(number)"
        self.startMethod = startMethod
        state = ForkSafeMutex(State(daemon: daemon, launch: launch))
    }

    deinit {
        state.withLock { state in
            if case .running(let child) = state.phase { Self.release(child) }
        }
    }

    /// The descriptor that becomes readable when the running child exits.
    var exitDescriptor: Int32? {
        state.withLock { state in
            if case .running(let child) = state.phase { return child.exitFD }
            return nil
        }
    }

    /// Whether the child is ended when its parent exits (Python's `daemon`).
    ///
    /// At a normal exit of the parent, daemon children are terminated and the
    /// others are joined. Either way no child outlives its parent: if the
    /// parent dies abruptly (even by SIGKILL) every child is killed at once.
    /// A daemon process may not start children of its own. Set it before
    /// ``start()``.
    public var daemon: Bool {
        get { state.withLock { $0.daemon } }
        set { state.withLock { $0.daemon = newValue } }
    }

    /// Whether the child prints an error its task throws to its standard
    /// error, as Python prints a child's traceback (`true` by default). The
    /// error reaches the parent either way, through ``ChildProcess/value``.
    /// Set it before ``start()``.
    public var printsErrors: Bool {
        get { state.withLock { $0.printsErrors } }
        set { state.withLock { $0.printsErrors = newValue } }
    }

    /// Where the parent says what happens to the child: its start (`debug`,
    /// with its pid and start method), a ``terminate()``, ``kill()`` or
    /// ``send(_:)`` (`info`), and its end: `debug` for an exit with code 0,
    /// `warning` for any other exit or a signal, with the status and the
    /// crash report's first line in the metadata. `nil` (the default):
    /// silent. Set it before ``start()``.
    public var logger: Logger? {
        get { state.withLock { $0.logger } }
        set { state.withLock { $0.logger = newValue } }
    }

    /// What the library's crash handler wrote in the child when a signal such
    /// as SIGSEGV, SIGILL (a Swift trap) or SIGABRT ended it: the signal, the
    /// faulting address and the first frames of its stack, with the
    /// executable's function names. `nil` while it runs, after any other end,
    /// and when the child ran Swift's own backtracer instead (`SWIFT_BACKTRACE`
    /// set in the parent's environment).
    public var crashReport: String? { state.withLock { $0.crashReport } }

    /// The child's process id, once started.
    public var pid: Int32? {
        state.withLock { state in
            switch state.phase {
            case .running(let child): child.pid
            case .finished(let pid): pid
            default: nil
            }
        }
    }

    /// How the child ended, once it has ended and been joined (or found ended by ``isAlive``).
    public var terminationStatus: TerminationStatus? { state.withLock { $0.status } }

    /// Python's `exitcode`: `nil` while running, the exit code once exited, or
    /// the negated signal number if a signal ended it.
    public var exitCode: Int32? { terminationStatus?.exitCode }

    /// Whether the child has started and not yet ended. Reaps it if it has ended.
    public var isAlive: Bool {
        switch state.withLock({ $0.phase }) {
        case .running: return !((try? wait(deadline: .now)) ?? false)
        case .starting: return true
        default: return false
        }
    }

    public var description: String {
        let status = state.withLock { state -> String in
            switch state.phase {
            case .created: return "created"
            case .starting: return "starting"
            case .running(let child): return "running, pid \(child.pid)"
            case .finished(let pid): return "pid \(pid), \(state.status.map { "\($0)" } ?? "ended")"
            case .closed: return "closed"
            }
        }
        return "\(name) (\(startMethod), \(status))"
    }

    /// Starts the child.
    ///
    /// - Throws: `.alreadyStarted` on a second call; `.unsafeFork` for the
    ///   fork method in a process with other threads; `.encodingFailed` when
    ///   the task value cannot be encoded; `.systemCall` when the process cannot
    ///   be created; `.invalidArgument` in a daemon process, which may not have
    ///   children.
    public func start() throws {
        ChildRuntime.takeOverIfPending()
        let (daemon, printsErrors, launch) = try state.withLock {
            state -> (Bool, Bool, @Sendable (ProcessIdentity) throws -> LaunchedChild) in
            switch state.phase {
            case .created:
                state.phase = .starting
                return (state.daemon, state.printsErrors, state.launch!)
            case .closed:
                throw MultiprocessingError(.closed, "process '\(name)' was closed")
            default:
                throw MultiprocessingError(
                    .alreadyStarted, "process '\(name)' was already started; a process starts once")
            }
        }
        let current = ProcessIdentity.current
        do {
            if current.daemon {
                throw MultiprocessingError(
                    .invalidArgument, "daemon process '\(current.name)' may not start children (as in Python)")
            }
            ChildRegistry.shared.reapFinished()
            var identity = ProcessIdentity(
                name: name, pid: 0, daemon: daemon, parentPID: current.pid, parentName: current.name)
            identity.printsErrors = printsErrors
            let child = try launch(identity)
            let logger = state.withLock {
                $0.phase = .running(child)
                $0.launch = nil
                return $0.logger
            }
            ChildRegistry.shared.add(self)
            logger?.debug(
                "child process started", metadata: logMetadata(pid: child.pid, ["start-method": "\(startMethod)"]))
        } catch {
            state.withLock { $0.phase = .created }
            throw error
        }
    }

    /// Waits until the child ends, without blocking a thread of the cooperative pool.
    ///
    /// Cancelling the waiting task stops the wait with `CancellationError`; the
    /// child keeps running (call ``terminate()`` or ``kill()`` to stop it).
    ///
    /// - Throws: `.notStarted` before ``start()``; `.closed` after ``close()``; `CancellationError`.
    public func join() async throws {
        _ = try await join(timeout: nil)
    }

    /// Waits until the child ends or `timeout` passes, without blocking a cooperative thread.
    ///
    /// - Returns: Whether the child has ended.
    @discardableResult
    public func join(timeout: Duration?) async throws -> Bool {
        let deadline = timeout.map { ContinuousClock.now + $0 }
        while true {
            try Task.checkCancellation()
            // Short slices keep cancellation prompt; the child's exit wakes the poll at once.
            var slice = ContinuousClock.now + .milliseconds(100)
            if let deadline, deadline < slice { slice = deadline }
            let sliceEnd = slice
            if try await BlockingThreads.run({ try self.wait(deadline: sliceEnd) }) { return true }
            if let deadline, deadline <= .now { return false }
        }
    }

    /// Waits until the child ends, or `timeout` passes (Python's `join(timeout)`).
    ///
    /// - Parameter timeout: How long to wait; `nil` waits as long as it takes.
    /// - Returns: Whether the child has ended. After `false` the child still
    ///   runs and ``isAlive`` is `true`.
    /// - Throws: `.notStarted` before ``start()``; `.closed` after ``close()``.
    @discardableResult
    public func join(timeout: Duration? = nil) throws -> Bool {
        try wait(deadline: timeout.map { .now + $0 })
    }

    /// Asks the child to end: sends SIGTERM (Python's `terminate()`). Does
    /// nothing if the child has already ended.
    public func terminate() throws { try send(.terminate) }

    /// Ends the child at once: sends SIGKILL (Python's `kill()`). Does
    /// nothing if the child has already ended.
    public func kill() throws { try send(.kill) }

    /// Sends a signal to the child. Does nothing if the child has already ended.
    ///
    /// - Throws: `.notStarted` before ``start()``; `.closed` after ``close()``;
    ///   `.systemCall` if the signal cannot be sent.
    public func send(_ signal: Signal) throws {
        let (pid, logger) = try state.withLock { state -> (Int32?, Logger?) in
            switch state.phase {
            case .running(let child):
                let result =
                    child.pidfd >= 0
                    ? mp_pidfd_send_signal(child.pidfd, signal.rawValue)
                    : systemKill(child.pid, signal.rawValue)
                if result != 0 && errno != ESRCH { throw Platform.error("sending \(signal.name)") }
                return (child.pid, state.logger)
            case .created, .starting:
                throw MultiprocessingError(.notStarted, "process '\(name)' has not been started")
            case .finished:
                return (nil, nil)
            case .closed:
                throw MultiprocessingError(.closed, "process '\(name)' was closed")
            }
        }
        if let pid { logger?.info("sent \(signal.name) to child process", metadata: logMetadata(pid: pid)) }
    }

    /// The metadata of every record about this child.
    private func logMetadata(pid: Int32, _ extra: Logger.Metadata = [:]) -> Logger.Metadata {
        extra.merging(["name": "\(name)", "pid": "\(pid)"]) { own, _ in own }
    }

    /// Reaps the child if it has exited, without waiting; its status, or
    /// `nil` while it runs.
    func reapIfExited() -> TerminationStatus? {
        guard (try? wait(deadline: .now)) == true else { return nil }
        return terminationStatus
    }

    /// Sends `signal` to the child's process group (a child that leads its
    /// own group, as pool workers do, takes what it started with it) and to
    /// the child itself. Does nothing once it has ended.
    func signalGroup(_ signal: Signal) {
        if let pid, state.withLock({ if case .running = $0.phase { true } else { false } }) {
            _ = systemKill(-pid, signal.rawValue)
        }
        try? send(signal)
    }

    /// Releases the process's resources (Python's `close()`).
    ///
    /// - Throws: `.stillRunning` while the child runs: join or kill it first.
    public func close() throws {
        _ = try? wait(deadline: .now)
        try state.withLock { state in
            switch state.phase {
            case .running, .starting:
                throw MultiprocessingError(
                    .stillRunning, "process '\(name)' is still running; join, terminate or kill it before close()")
            default:
                state.phase = .closed
            }
        }
    }

    /// Waits for the exit (and the outcome) until `deadline`; returns whether the child ended.
    func wait(deadline: ContinuousClock.Instant?) throws -> Bool {
        let child: LaunchedChild
        switch state.withLock({ $0.phase }) {
        case .running(let running): child = running
        case .finished: return true
        case .closed: throw MultiprocessingError(.closed, "process '\(name)' was closed")
        case .created, .starting: throw MultiprocessingError(.notStarted, "process '\(name)' has not been started")
        }
        guard lockWaiting(until: deadline) else { return false }
        defer { waitLock.unlock() }
        if state.withLock({ $0.status }) != nil { return true }
        while true {
            let exited =
                child.exitFD >= 0
                ? try Platform.waitReadable([child.exitFD], deadline: deadline)[0]
                : try pollWithoutPidfd(child, deadline: deadline)
            if exited {
                reap(child)
                return true
            }
            if let deadline, deadline <= .now { return false }
        }
    }

    private func lockWaiting(until deadline: ContinuousClock.Instant?) -> Bool {
        guard let deadline else {
            waitLock.lock()
            return true
        }
        while !waitLock.tryLock() {
            if deadline <= .now { return false }
            usleep(1000)
        }
        return true
    }

    /// Without a pidfd (kernels before 5.3): looks for the exit every 10 ms.
    private func pollWithoutPidfd(_ child: LaunchedChild, deadline: ContinuousClock.Instant?) throws -> Bool {
        while true {
            if Platform.hasEnded(child.pid) { return true }
            if let deadline, deadline <= .now { return false }
            usleep(10_000)
        }
    }

    private func reap(_ child: LaunchedChild) {
        var status: TerminationStatus
        if child.isDirect {
            // ECHILD: something else (SIGCHLD set to SIG_IGN) reaped it and its status is lost.
            status = (try? Platform.reap(child.pid)).map(TerminationStatus.init(waitStatus:)) ?? .exited(255)
        } else {
            status = Self.serverReportedStatus(child) ?? Self.statusWithoutServer(child)
        }
        let outcome = Self.readOutcome(child.resultFD)
        var crashReport: String?
        if outcome == nil, case .signaled = status { crashReport = CrashReport.read(from: child.resultFD) }
        let logger = state.withLock { state in
            state.outcome = outcome
            state.crashReport = crashReport
            state.status = status
            state.phase = .finished(pid: child.pid)
            return state.logger
        }
        Self.release(child)
        ChildRegistry.shared.remove(self)
        if let logger { log(status, crashReport: crashReport, pid: child.pid, to: logger) }
    }

    private func log(_ status: TerminationStatus, crashReport: String?, pid: Int32, to logger: Logger) {
        var metadata = logMetadata(pid: pid, ["status": "\(status)"])
        if status == .exited(0) {
            logger.debug("child process exited", metadata: metadata)
            return
        }
        if let firstLine = crashReport?.split(separator: "\n").first { metadata["crash"] = "\(firstLine)" }
        logger.warning("child process \(status)", metadata: metadata)
    }

    /// The wait status the fork server sent for its worker, which has
    /// exited; `nil` if the server died first (or does not answer in 2 s).
    private static func serverReportedStatus(_ child: LaunchedChild) -> TerminationStatus? {
        // The worker has exited; the server reports as soon as it has reaped it.
        guard (try? Platform.waitReadable([child.statusFD], deadline: .now + .seconds(2)))?[0] == true else {
            return nil
        }
        var reply: (Int32, Int32) = (0, 0)
        return mp_read_all(child.statusFD, &reply, 8) == 0 ? TerminationStatus(waitStatus: reply.1) : nil
    }

    /// The status of a fork server's worker whose server died before it: the
    /// kernel keeps it for the holder of a pidfd once the worker is reaped
    /// (by the init process, or a subreaper; some container inits reap only
    /// every second or so). `.unknown` where it cannot.
    private static func statusWithoutServer(_ child: LaunchedChild) -> TerminationStatus {
        guard child.pidfd >= 0 else { return .unknown }
        let deadline = ContinuousClock.now + .seconds(5)
        while true {
            var raw: Int32 = 0
            if mp_pidfd_exit_status(child.pidfd, &raw) == 0 { return TerminationStatus(waitStatus: raw) }
            // EAGAIN: exited, not yet reaped by its new parent.
            guard errno == EAGAIN, ContinuousClock.now < deadline else { return .unknown }
            usleep(1000)
        }
    }

    private static func release(_ child: LaunchedChild) {
        if child.pidfd != child.exitFD { Platform.close(child.pidfd) }
        if child.statusFD >= 0 && child.statusFD != child.exitFD { Platform.close(child.statusFD) }
        Platform.close(child.exitFD)
        Platform.close(child.resultFD)
    }

    /// Reads the outcome frame the child wrote into its result file; `nil`
    /// if it wrote none, or only part of one (it died first).
    private static func readOutcome(_ fd: Int32) -> Outcome? {
        // The child wrote through a descriptor sharing this one's offset.
        guard lseek(fd, 0, SEEK_SET) == 0 else { return nil }
        var reader = FrameReader(fd: fd)
        guard let bytes = try? reader.readFrame(limit: Int.max) else { return nil }
        return try? Outcome(message: bytes)
    }

    /// The child's outcome, as the encoded result or the error to throw.
    func outcomeBytes() throws -> [UInt8] {
        let (phase, status, outcome, crashReport) = state.withLock {
            ($0.phase, $0.status, $0.outcome, $0.crashReport)
        }
        guard let status else {
            if case .created = phase {
                throw MultiprocessingError(.notStarted, "process '\(name)' has not been started")
            }
            throw MultiprocessingError(.stillRunning, "process '\(name)' has not been joined yet")
        }
        switch outcome {
        case .success(let bytes): return bytes
        case .failure(let envelope): throw envelope.error
        case nil:
            var error = MultiprocessingError(
                .processDied, "process '\(name)' (pid \(pid ?? 0)) \(status) before it finished its task")
            error.crashReport = crashReport
            throw error
        }
    }
}

/// A child process that runs a task (or, with the fork start method, a
/// closure) and delivers its result (Python's `multiprocessing.Process`).
///
/// ```swift
/// struct Work: ProcessTask {
///     var number: Int
///     func run() { print("working on \(number) in \(currentProcess.pid)") }
/// }
///
/// let child = try ChildProcess(Work(number: 1))
/// try child.start()
/// try await child.join()
/// print(child.exitCode!)   // 0
/// ```
///
/// The result of ``ProcessTask/run()`` is ``value``. An error thrown in the
/// child is rethrown by ``value``: as its own type if it is `Codable`, as a
/// ``RemoteError`` otherwise. A child ended by a signal makes ``value`` throw
/// `.processDied`, naming the signal.
public final class ChildProcess<Output: Sendable>: AnyChildProcess, @unchecked Sendable {
    // @unchecked: `decode` is immutable; all state is in the base class.
    private let decode: @Sendable ([UInt8]) throws -> Output

    /// Creates a process that will run `task`.
    ///
    /// - Parameters:
    ///   - task: The work. With ``StartMethod/spawn`` and
    ///     ``StartMethod/forkserver`` it is encoded when the process starts and
    ///     decoded in the child; with ``StartMethod/fork`` the child uses its
    ///     copy of it.
    ///   - name: The process's name; `ChildProcess-N` by default.
    ///   - startMethod: How to start it; ``StartMethod/default`` by default.
    ///   - daemon: See ``AnyChildProcess/daemon``.
    /// - Throws: `.unresolvableTask` when the task's type cannot be found by
    ///   name in a child (it is private, fileprivate or local), unless the
    ///   start method is fork.
    public convenience init<T: ProcessTask>(
        _ task: T, name: String? = nil, startMethod: StartMethod = .default, daemon: Bool = false
    ) throws where T.Output == Output {
        try self.init(task, name: name, startMethod: startMethod, forkServer: nil, daemon: daemon)
    }

    /// A process for `task`, started by `forkServer` when one is given (a
    /// ``ForkingPool``'s zygote) rather than as `startMethod` says.
    init<T: ProcessTask>(
        _ task: T, name: String?, startMethod: StartMethod, forkServer: Zygote?, daemon: Bool
    ) throws where T.Output == Output {
        decode = { try T._decodeOutput($0) }
        let title = name ?? String(describing: T.self)
        let launch: @Sendable (ProcessIdentity) throws -> LaunchedChild
        if startMethod.kind == .fork {
            launch = { identity in
                // Look the output type up here, once, rather than in every forked child.
                Launcher.resolveOutputForForkedChildren(of: T.self)
                return try Launcher.launchForked(method: startMethod, identity: identity, title: title) {
                    runSynchronously { await ChildRuntime.perform(task) }
                }
            }
        } else {
            let typeName = try TaskName.resolvable(T.self)
            launch = { identity in
                let transfer = DescriptorTransfer()
                var encoder = WireEncoder()
                encoder.userInfo[.descriptorTransfer] = transfer
                let payload = try encoder.encode(task)
                let job = Job(
                    taskType: typeName, payload: payload, name: identity.name, daemon: identity.daemon,
                    parentPID: identity.parentPID, parentName: identity.parentName,
                    printsErrors: identity.printsErrors, title: title)
                return try Launcher.launch(
                    job, extraFDs: transfer.descriptors, method: startMethod, forkServer: forkServer)
            }
        }
        super.init(name: name, startMethod: startMethod, daemon: daemon, launch: launch)
    }

    /// Creates a process that will run a closure in a forked copy of this process.
    ///
    /// The closure may capture anything: the child starts as a copy-on-write
    /// copy of this process. Its result travels back in the wire format.
    /// Only a forked child has the closure, so there is no start method to
    /// choose: for `.spawn` and `.forkserver`, describe the work as a
    /// ``ProcessTask``.
    ///
    /// - Parameters:
    ///   - name: The process's name; `ChildProcess-N` by default.
    ///   - allowingOtherThreads: `true` to fork even though other threads
    ///     run; see ``StartMethod/fork(allowingOtherThreads:)`` for the risk.
    ///   - daemon: See ``AnyChildProcess/daemon``.
    ///   - body: The work.
    public convenience init(
        name: String? = nil, allowingOtherThreads: Bool = false, daemon: Bool = false,
        _ body: @escaping @Sendable () async throws -> Output
    ) throws where Output: Codable {
        try self.init(name: name, allowingOtherThreads: allowingOtherThreads, daemon: daemon, body: body) {
            try WireEncoder().encode($0)
        } decode: {
            try WireDecoder().decode(Output.self, from: $0)
        }
    }

    /// Creates a process that will run a closure returning nothing in a forked copy of this process.
    ///
    /// See ``init(name:allowingOtherThreads:daemon:_:)-(_,_,_,()->Output)``.
    public convenience init(
        name: String? = nil, allowingOtherThreads: Bool = false, daemon: Bool = false,
        _ body: @escaping @Sendable () async throws -> Void
    ) throws where Output == Void {
        try self.init(name: name, allowingOtherThreads: allowingOtherThreads, daemon: daemon, body: body) { _ in
            []
        } decode: { _ in
        }
    }

    @available(
        *, unavailable,
        message:
            "a closure runs only in a forked child: drop startMethod (write allowingOtherThreads: true for .fork(allowingOtherThreads: true)), or describe the work as a ProcessTask for .spawn and .forkserver"
    )
    public convenience init(
        name: String? = nil, startMethod: StartMethod, daemon: Bool = false,
        _ body: @escaping @Sendable () async throws -> Output
    ) throws {
        fatalError("unavailable")
    }

    private init(
        name: String?, allowingOtherThreads: Bool, daemon: Bool,
        body: @escaping @Sendable () async throws -> Output,
        encode: @escaping @Sendable (Output) throws -> [UInt8],
        decode: @escaping @Sendable ([UInt8]) throws -> Output
    ) throws {
        let startMethod = StartMethod.fork(allowingOtherThreads: allowingOtherThreads)
        self.decode = decode
        super.init(name: name, startMethod: startMethod, daemon: daemon) { identity in
            try Launcher.launchForked(method: startMethod, identity: identity) {
                runSynchronously {
                    do {
                        return (.success(try encode(try await body())), 0)
                    } catch {
                        return (.failure(ErrorEnvelope(error, processName: ProcessIdentity.current.name)), 1)
                    }
                }
            }
        }
    }

    /// What the task returned, once the child has been joined.
    ///
    /// - Throws: The error the task threw (its own type if `Codable`, else
    ///   ``RemoteError``); `.processDied` when the child ended without a
    ///   result (a signal, or an exit in the middle of the task); `.stillRunning`
    ///   before the child has been joined.
    public var value: Output {
        get throws { try decode(outcomeBytes()) }
    }

    /// Starts `task` in a child, waits for it, and returns its result.
    ///
    /// - Throws: What ``value`` throws, and what ``AnyChildProcess/start()`` throws.
    public static func run<T: ProcessTask>(
        _ task: T, name: String? = nil, startMethod: StartMethod = .default
    ) async throws -> Output where T.Output == Output {
        let child = try ChildProcess(task, name: name, startMethod: startMethod)
        try child.start()
        do {
            try await child.join()
        } catch {
            try? child.kill()
            _ = try? await BlockingThreads.run { try child.wait(deadline: nil) }
            throw error
        }
        return try child.value
    }
}
