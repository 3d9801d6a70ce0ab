#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import CMultiprocessing
import Synchronization

/// What runs inside a child: reading its job, running the task, sending the outcome.
enum ChildRuntime {
    /// Entered from the start-up hook in `boot.c` in a spawned or fork-server
    /// child, before the program's `main`. Returns the exit code.
    static func main() -> Int32 {
        let extras = Int(mp_boot_extra_count())
        let resultFD = mp_boot_result_fd()
        Platform.setCloseOnExec(resultFD)
        let job: Job
        do {
            var reader = FrameReader(fd: mp_boot_job_fd())
            job = try WireDecoder().decode(Job.self, from: reader.readFrame(limit: Int.max))
        } catch {
            // The parent is gone or sent garbage: there is nobody to report to.
            return 70
        }
        Platform.close(mp_boot_job_fd())
        ProcessIdentity.becomeChild(
            name: job.name, daemon: job.daemon, parentPID: job.parentPID, parentName: job.parentName,
            printsErrors: job.printsErrors)
        CrashReport.install(fd: resultFD, name: job.name)
        ProcessTitle.set("child \(job.title)")
        let transfer = DescriptorTransfer(descriptors: (0..<extras).map { mp_boot_extra_fd(Int32($0)) })
        let (outcome, code) = run(job, transfer: transfer)
        finish(outcome: outcome, resultFD: resultFD)
        return code
    }

    private static func run(_ job: Job, transfer: DescriptorTransfer) -> (Outcome, Int32) {
        guard let type = _typeByName(job.taskType) as? any ProcessTask.Type else {
            let error = MultiprocessingError(
                .unresolvableTask,
                "the child process cannot find the task type '\(job.taskType)': "
                    + "is it declared in this program, internal or public, and not generic over a private type?")
            return (.failure(ErrorEnvelope(error, processName: job.name)), 1)
        }
        return decodeAndRun(type, job: job, transfer: transfer)
    }

    private static func decodeAndRun<T: ProcessTask>(
        _ type: T.Type, job: Job, transfer: DescriptorTransfer
    ) -> (Outcome, Int32) {
        let task: T
        do {
            var decoder = WireDecoder()
            decoder.userInfo[.descriptorTransfer] = transfer
            task = try decoder.decode(T.self, from: job.payload)
        } catch {
            return (.failure(ErrorEnvelope(error, processName: job.name)), 1)
        }
        return runSynchronously { await perform(task) }
    }

    /// Runs a task and turns its result or error into an outcome and an exit code.
    static func perform<T: ProcessTask>(_ task: T) async -> (Outcome, Int32) {
        do {
            let output = try await task.run()
            return (.success(try T._encodeOutput(output)), 0)
        } catch {
            return (.failure(ErrorEnvelope(error, processName: ProcessIdentity.current.name)), 1)
        }
    }

    /// In a child that runs the program's top-level code (see `boot.c`):
    /// called where the program starts a process, it runs the child's task
    /// there and exits. Does nothing in any other process.
    /// In the parent, the first call also notes whether other threads ran at
    /// the program's first start (see ``ProgramEntry/otherThreadsAtFirstStart``).
    @inline(__always)
    static func takeOverIfPending() {
        _ = mp_boot_take_over_if_pending()
        _ = ProgramEntry.otherThreadsAtFirstStart
    }

    /// Sends the outcome to the parent, then joins the child's own non-daemon children.
    static func finish(outcome: Outcome, resultFD: Int32) {
        // A crash from here on is not the task's: the file holds its outcome.
        mp_set_crash_fd(-1)
        if case .failure(let envelope) = outcome, ProcessIdentity.current.printsErrors {
            printFailure(envelope)
        }
        if var frame = try? encodeFrame(outcome) {
            try? Frame.write(reservedHeader: &frame, to: resultFD)
        } else if var frame = try? encodeFrame(
            Outcome.failure(
                ErrorEnvelope(
                    MultiprocessingError(.encodingFailed, "the task's result could not be encoded"),
                    processName: ProcessIdentity.current.name)))
        {
            try? Frame.write(reservedHeader: &frame, to: resultFD)
        }
        Platform.close(resultFD)
        ChildRegistry.shared.cleanUpAtExit()
    }

    /// Writes a task's error to standard error, as Python prints a child's traceback.
    private static func printFailure(_ envelope: ErrorEnvelope) {
        let identity = ProcessIdentity.current
        let text =
            "Process '\(identity.name)' (pid \(identity.pid)) failed: \(envelope.typeName): \(envelope.description)\n"
        fflush(nil)
        Platform.writeStandardError(text)
    }

    private static func encodeFrame(_ outcome: Outcome) throws -> [UInt8] {
        var frame: [UInt8] = [0, 0, 0, 0]
        try outcome.append(to: &frame)
        return frame
    }

    /// In a child just forked, by any path: drops what was the parent's (its
    /// fork server, its children, its blocking threads, which did not come
    /// along, and its lifeline). Returns the read end of the parent's
    /// lifeline, if it had one.
    @discardableResult
    static func forgetParentAfterFork() -> Int32? {
        ForkServer.forgetAfterFork()
        Zygote.forgetAfterFork()
        ChildRegistry.shared.forgetAfterFork()
        BlockingThreads.forgetAfterFork()
        return Lifeline.forgetAfterFork()
    }

    /// In a child made by `fork`: forget the parent's lifeline, fork server
    /// and children, and follow the parent when it dies.
    ///
    /// The child watches the lifeline with a thread, as a spawned child does,
    /// so that the processes its work starts go with it (PR_SET_PDEATHSIG
    /// would kill the child alone, and fires when the forking *thread*
    /// exits). Without a lifeline, a child forked from the main thread asks
    /// the kernel for SIGKILL when that thread exits.
    static func becomeForkedChild(identity: ProcessIdentity, forkedFromMainThread: Bool) {
        mp_set_boot_mode(3)
        let lifeline = forgetParentAfterFork()
        let watched = lifeline.map { mp_watch_lifeline($0) == 0 } ?? false
        if !watched && forkedFromMainThread {
            mp_die_with_parent(identity.parentPID)
        }
        ProcessIdentity.becomeChild(
            name: identity.name, daemon: identity.daemon, parentPID: identity.parentPID,
            parentName: identity.parentName, printsErrors: identity.printsErrors)
    }
}

/// Runs async work to completion from synchronous code that owns its thread
/// (a child's main thread).
///
/// The work starts on this thread and stays there until its first real
/// suspension, so a task whose `run()` never suspends starts no thread: its
/// process stays single-threaded and may itself use the fork start method.
/// After a suspension the work continues on the global executor while this
/// thread waits.
func runSynchronously<R: Sendable>(_ body: @escaping @Sendable () async -> R) -> R {
    let box = ResultBox<R>()
    if #available(macOS 26.0, *) {
        Task.immediate { box.put(await body()) }
    } else {
        Task.detached { box.put(await body()) }
    }
    return box.take()
}

private final class ResultBox<R: Sendable>: @unchecked Sendable {
    // @unchecked: `value` is written once and read once, both under `lock`.
    private let lock = ConditionLock()
    private var value: R?

    func put(_ result: R) {
        lock.withLock {
            value = result
            lock.signal()
        }
    }

    func take() -> R {
        lock.withLock {
            while value == nil { lock.wait() }
            return value!
        }
    }
}

@_cdecl("swift_multiprocessing_child_main")
func swiftMultiprocessingChildMain() -> Int32 {
    ChildRuntime.main()
}
