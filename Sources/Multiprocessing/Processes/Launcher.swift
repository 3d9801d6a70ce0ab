#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import CMultiprocessing
import Synchronization

/// A started child as the parent sees it: how to wait for it, signal it and
/// collect its outcome. Owned by one ``AnyChildProcess``.
struct LaunchedChild: Sendable {
    var pid: Int32
    /// A pidfd for signals without pid-reuse races; -1 when the kernel has none.
    var pidfd: Int32
    /// Readable once the child has exited: its pidfd (without one, the fork
    /// server's reply descriptor for one of its workers).
    var exitFD: Int32
    /// Whether the child is this process's own (so it reaps it with waitpid).
    var isDirect: Bool
    /// For a fork server's worker: where the server writes its wait status
    /// (end-of-file if the server died first); -1 for a direct child.
    var statusFD: Int32 = -1
    /// The file the child writes its outcome frame into; read once it has
    /// exited. A file rather than a pipe: the child never waits for the
    /// parent to read, so the parent sleeps until the exit alone and wakes
    /// once per child, not also when the outcome is written.
    var resultFD: Int32
}

/// The job a spawned or fork-server child reads first, on MP_FD_JOB.
struct Job: Codable {
    var taskType: String
    var payload: [UInt8]
    var name: String
    var daemon: Bool
    var parentPID: Int32
    var parentName: String
    /// Whether the child prints the error its task throws.
    var printsErrors: Bool
    /// What the child's title says it runs: its name, or its task's type.
    var title: String
}

/// The pipe whose end-of-file tells every child that this process is gone.
///
/// This process holds the only write end (close-on-exec, and closed in forked
/// children); each child watches the read end with a thread that kills it at
/// end-of-file. So children never outlive their parent, however it ends, even
/// by SIGKILL, and without PR_SET_PDEATHSIG (which fires when the *thread*
/// that started the child exits).
enum Lifeline {
    private static let ends = ForkSafeMutex<(read: Int32, write: Int32)?>(nil)
    /// The read end once made (-1 before): read without taking the lock,
    /// which would write to memory around every fork.
    private static let madeReadEnd = Atomic<Int32>(-1)

    static func readEnd() throws -> Int32 {
        let made = madeReadEnd.load(ordering: .acquiring)
        if made >= 0 { return made }
        return try ends.withLock { ends in
            if let ends { return ends.read }
            let pipe = try Platform.makePipe()
            ends = pipe
            madeReadEnd.store(pipe.read, ordering: .releasing)
            return pipe.read
        }
    }

    /// In a forked child: drop the parent's lifeline (keeping its read end to
    /// watch) so the child's own children get a fresh one.
    static func forgetAfterFork() -> Int32? {
        guard madeReadEnd.load(ordering: .relaxed) >= 0 else { return nil }
        madeReadEnd.store(-1, ordering: .relaxed)
        return ends.withLock { ends in
            defer { ends = nil }
            guard let inherited = ends else { return nil }
            Platform.close(inherited.write)
            return inherited.read
        }
    }
}

enum Launcher {
    /// Starts a spawned or fork-server child for `job`, handing it `extraFDs`
    /// as well; `forkServer`, when given, starts it whatever `method` says.
    static func launch(
        _ job: Job, extraFDs: [Int32], method: StartMethod, forkServer: Zygote? = nil
    ) throws -> LaunchedChild {
        ChildRuntime.takeOverIfPending()
        var frame: [UInt8] = [0, 0, 0, 0]
        try WireEncoder().encode(job, into: &frame)
        let jobPipe = try Platform.makePipe()
        let resultFile: Int32
        do {
            resultFile = try Platform.makeAnonymousFile()
        } catch {
            Platform.close(jobPipe.read)
            Platform.close(jobPipe.write)
            throw error
        }
        var child: LaunchedChild
        do {
            if let forkServer {
                child = try ForkServer.request(control: forkServer.control, fds: [jobPipe.read, resultFile] + extraFDs)
            } else {
                child = try start(method, job: jobPipe.read, result: resultFile, extraFDs: extraFDs)
            }
        } catch {
            for fd in [jobPipe.read, jobPipe.write, resultFile] { Platform.close(fd) }
            throw error
        }
        Platform.close(jobPipe.read)
        child.resultFD = resultFile
        // A child that dies before reading its job shows in its status, not here.
        try? Frame.write(reservedHeader: &frame, to: jobPipe.write)
        Platform.close(jobPipe.write)
        return child
    }

    /// Starts a child as `method` says, holding the job's and the result's descriptors and `extraFDs`.
    private static func start(_ method: StartMethod, job: Int32, result: Int32, extraFDs: [Int32])
        throws -> LaunchedChild
    {
        switch method.kind {
        case .spawn:
            return try spawn(fds: [job, result, Lifeline.readEnd()] + extraFDs)
        case .forkserver where ProgramEntry.forkServerCannotKeepGlobals:
            // Each child runs the top-level code itself, as a spawned one does.
            return try spawn(fds: [job, result, Lifeline.readEnd()] + extraFDs)
        case .forkserver:
            return try ForkServer.start(fds: [job, result] + extraFDs)
        case .fork:
            preconditionFailure("fork children are launched by launchForked")
        }
    }

    private static func spawn(fds: [Int32]) throws -> LaunchedChild {
        direct(pid: try spawnSelf(mode: "spawn", fds: fds))
    }

    /// Starts this program's own binary (`posix_spawn` of /proc/self/exe)
    /// booted as `mode`, holding `fds` from `MP_FD_JOB` on: the job, the
    /// result, the lifeline, then the extras. The one spawn of the library.
    static func spawnSelf(mode: String, fds: [Int32]) throws -> pid_t {
        let environment = bootEnvironment(mode: mode, extras: fds.count - 3)
        let arguments = CommandLine.arguments.isEmpty ? ["swift-multiprocessing-\(mode)"] : CommandLine.arguments
        var pid: pid_t = 0
        let result = withCStrings(arguments) { argv in
            withCStrings(environment) { envp in
                fds.withUnsafeBufferPointer { mp_spawn_self(&pid, $0.baseAddress, Int32(fds.count), argv, envp) }
            }
        }
        if result != 0 { throw Platform.error("posix_spawn of /proc/self/exe (\(mode))", result) }
        return pid
    }

    /// The environment of a spawned child or fork server: this process's,
    /// with the marker the start-up hook looks for, and without Swift's
    /// backtracer unless the user asked for it (the library's crash handler
    /// reports in milliseconds, and lets no crash signal return).
    static func bootEnvironment(mode: String, extras: Int) -> [String] {
        var flags = ""
        if ProgramEntry.runsTopLevelCode { flags += "m" }
        var environment = currentEnvironment()
        if CrashReport.wantedForChildren {
            flags += "c"
            environment.append("SWIFT_BACKTRACE=enable=no")
        }
        // Padded: once the child has removed it, it is room for the child's title.
        let padding = ":" + String(repeating: "_", count: 80)
        return ["\(MP_BOOT_ENV)=\(mode):\(extras):\(flags)\(padding)"] + environment
    }

    /// Forks this process; the child runs `body` and exits with the code it returns.
    static func launchForked(
        method: StartMethod, identity: ProcessIdentity, title: String? = nil, body: @escaping () -> (Outcome, Int32)
    ) throws -> LaunchedChild {
        try prepareToFork(
            allowingOtherThreads: method.allowsOtherThreads,
            alternatives: "Use StartMethod.forkserver or .spawn, or StartMethod.fork(allowingOtherThreads: true)")
        _ = try Lifeline.readEnd()
        _ = warmedForForkedChildren
        let resultFile = try Platform.makeAnonymousFile()
        let fromMainThread = mp_is_main_thread() != 0
        let pid: pid_t
        do {
            pid = try Platform.fork()
        } catch {
            Platform.close(resultFile)
            throw error
        }
        if pid == 0 {
            // The caller's mask and handlers are not the child's: with SIGCHLD
            // blocked it would never see its own children end, with SIGTERM
            // ignored terminate() could not stop it.
            mp_reset_signals()
            ChildRuntime.becomeForkedChild(identity: identity, forkedFromMainThread: fromMainThread)
            // The parent's exit handlers are not the child's; its own run at its exit.
            mp_mark_exit_handlers()
            CrashReport.install(fd: resultFile, name: identity.name)
            ProcessTitle.set("child \(title ?? identity.name)")
            let (outcome, code) = body()
            ChildRuntime.finish(outcome: outcome, resultFD: resultFile)
            mp_exit_running_own_handlers(code)
        }
        var child = direct(pid: pid)
        child.resultFD = resultFile
        return child
    }

    /// Runs, once, what every forked child runs, so that the type metadata,
    /// protocol conformances and lazily bound symbols it needs are already
    /// resolved when the child inherits this process's memory. Otherwise each
    /// child would look them up anew (and throw the result away when it
    /// exits): a third of a forked child's cost. Starts no thread.
    static let warmedForForkedChildren: Void = {
        mp_bind_forked_child_symbols()
        if CrashReport.wantedForChildren { mp_load_unwinder() }
        // A String passed to C, as the child passes its name to the crash handler.
        precondition(strlen(String(repeating: "x", count: 1)) == 1)
        let (outcome, _) = runSynchronously { await performUnspecialized(WarmUpTask()) }
        var frame: [UInt8] = [0, 0, 0, 0]
        try? outcome.append(to: &frame)
    }()

    /// Calls the generic `perform` as a child calls it, for a task type it
    /// does not know statically.
    @_optimize(none)
    private static func performUnspecialized(_ task: any ProcessTask) async -> (Outcome, Int32) {
        await ChildRuntime.perform(task)
    }

    /// Looks `T.Output` up through `T`'s conformance, as a child's generic
    /// code does, so that forked children find it cached instead of
    /// demangling it each. Not optimized: specialized, it would skip the lookup.
    @inline(never)
    static func resolveOutputForForkedChildren<T: ProcessTask>(of type: T.Type) {
        resolvedOutput.withLock { $0 = ObjectIdentifier(outputType(of: type)) }
    }

    @_optimize(none)
    private static func outputType<T: ProcessTask>(of type: T.Type) -> Any.Type { T.Output.self }

    /// Where the lookup's result goes, so that it is not optimized away.
    private static let resolvedOutput = ForkSafeMutex<ObjectIdentifier?>(nil)

    static func direct(pid: pid_t) -> LaunchedChild {
        let pidfd = mp_pidfd_open(pid)
        return LaunchedChild(pid: pid, pidfd: pidfd, exitFD: pidfd, isDirect: true, resultFD: -1)
    }
}

/// The client side of the fork server (see `boot.c` for the server).
enum ForkServer {
    private struct Server {
        var control: Int32
        var pid: pid_t
    }

    private static let server = ForkSafeMutex<Server?>(nil)
    /// Whether this process ever started the server: a forked child of one
    /// that did not leaves `server` alone (see `Zygote.anyOpened`).
    private static let everStarted = Atomic<Bool>(false)

    /// Asks the server for a worker holding `fds` at MP_FD_JOB, MP_FD_RESULT and
    /// MP_FD_FIRST_EXTRA on. The server is started on first use, and started
    /// again if it died.
    static func start(fds: [Int32]) throws -> LaunchedChild {
        try server.withLock { server in
            for attempt in 0..<2 {
                if server == nil {
                    everStarted.store(true, ordering: .relaxed)
                    server = try startServer()
                }
                do {
                    return try request(control: server!.control, fds: fds)
                } catch let error as MultiprocessingError where error.code == .endOfStream && attempt == 0 {
                    stopServer(&server)
                }
            }
            throw MultiprocessingError(.endOfStream, "the fork server exited while starting a child")
        }
    }

    /// In a forked child: the parent's server belongs to the parent.
    static func forgetAfterFork() {
        guard everStarted.load(ordering: .relaxed) else { return }
        server.withLock { server in
            if let control = server?.control { Platform.close(control) }
            server = nil
        }
    }

    private static func stopServer(_ server: inout Server?) {
        guard let current = server else { return }
        Platform.close(current.control)
        _ = try? Platform.reap(current.pid)
        server = nil
    }

    private static func startServer() throws -> Server {
        let pair = try Platform.makeMessageSocketPair()
        defer { Platform.close(pair[1]) }
        do {
            // The control socket in the job's place; no result file.
            let pid = try Launcher.spawnSelf(mode: "forkserver", fds: [pair[1], -1, try Lifeline.readEnd()])
            return Server(control: pair[0], pid: pid)
        } catch {
            Platform.close(pair[0])
            throw error
        }
    }

    /// Asks the fork server behind `control` for a worker holding `fds`.
    static func request(control: Int32, fds: [Int32]) throws -> LaunchedChild {
        let reply = try Platform.makePipe()
        let all = [reply.write] + fds
        var byte: UInt8 = 1
        let sent = all.withUnsafeBufferPointer {
            mp_send_with_fds(control, &byte, 1, $0.baseAddress, Int32(all.count), 0)
        }
        Platform.close(reply.write)
        if sent < 0 {
            let code = errno
            Platform.close(reply.read)
            if code == EPIPE || code == ECONNRESET {
                throw MultiprocessingError(.endOfStream, "the fork server is gone", errno: code)
            }
            throw Platform.error("sendmsg to the fork server", code)
        }
        var pid: Int32 = 0
        let readResult = mp_read_all(reply.read, &pid, 4)
        guard readResult == 0, pid > 0 else {
            Platform.close(reply.read)
            if readResult == -1 {
                throw MultiprocessingError(.endOfStream, "the fork server is gone")
            }
            throw MultiprocessingError(.systemCall, "the fork server could not fork", errno: readResult)
        }
        // The worker's own pidfd tells its exit, also when the server is gone.
        let pidfd = mp_pidfd_open(pid)
        return LaunchedChild(
            pid: pid, pidfd: pidfd, exitFD: pidfd >= 0 ? pidfd : reply.read, isDirect: false,
            statusFD: reply.read, resultFD: -1)
    }
}

private func currentEnvironment() -> [String] {
    var result: [String] = []
    var entry = environ
    let marker = "\(MP_BOOT_ENV)="
    while let pointer = entry.pointee {
        let variable = String(cString: pointer)
        if !variable.hasPrefix(marker) { result.append(variable) }
        entry += 1
    }
    return result
}

/// Calls `body` with a NULL-terminated C array of the strings.
func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { for pointer in pointers { free(pointer) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}

/// The task the warm-up for forked children performs in the parent.
private struct WarmUpTask: ProcessTask {
    func run() {}
}

/// What the parent knows of the program's entry point, from its executable's symbol table.
enum ProgramEntry {
    /// Whether threads other than the library's own ran when this program
    /// first started a process (noted by ``ChildRuntime/takeOverIfPending()``).
    /// A child that runs the top-level code reaches that point with the same
    /// threads: top-level code takes the same path in every run.
    static let otherThreadsAtFirstStart: Bool = {
        !ThreadCensus.take().others.isEmpty
    }()

    /// Whether a fork server cannot hold the globals of this program's
    /// `main.swift`: it would have to run the top-level code to the first
    /// start, and fork from there with other threads (an async main's, a
    /// task's, Dispatch's) running, which risks a deadlock in every child.
    /// Then `.forkserver` starts each child as `.spawn` does: each runs the
    /// top-level code itself and sees the globals, at a spawn's cost.
    static var forkServerCannotKeepGlobals: Bool { runsTopLevelCode && otherThreadsAtFirstStart }

    /// Whether the program starts in top-level code (a `main.swift`), whose
    /// globals are initialized by running it: then its children run that code
    /// too, up to where the program first starts a process. An `@main` type
    /// (and the test runner) has lazily initialized globals and needs nothing.
    /// Without a symbol table (a stripped executable) the children do not.
    static let runsTopLevelCode: Bool = {
        if let forced = getenv("SWIFT_MULTIPROCESSING_RUN_TOP_LEVEL_CODE") {
            return String(cString: forced) != "0"
        }
        return mp_program_entry_kind() == 0
    }()
}
