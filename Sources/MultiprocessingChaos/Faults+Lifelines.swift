#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import Multiprocessing

/// The environment variable that marks a victim's processes: every process
/// it starts, and every process those start, inherits it.
let markName = "MULTIPROCESSING_CHAOS_MARK"

/// A sub-process of the chaos program (started with `--victim`) makes
/// children of both re-executing start methods, a pool with busy workers,
/// and grandchildren (library children of a child, a `posix_spawn` and a raw
/// `fork()` in workers), then is killed with SIGKILL. 5 s later no
/// process carrying its mark may be alive.
let parentKillFault = Fault(
    name: "parent-kill",
    summary: "the parent is SIGKILLed with children, a pool and grandchildren alive",
    deadline: .seconds(90)
) { index, _ in
    let mark = "\(markName)=\(getpid())-\(index)"
    let victim = try Victim.start(mark: mark)
    guard let line = await victim.readLine(within: .seconds(60)), line.hasPrefix("ready") else {
        victim.kill()
        return .wrong("the victim did not get ready: \(victim.output)")
    }
    let before = processesMarked(mark)
    victim.kill()
    let survivors = await eventually(within: .seconds(5)) { processesMarked(mark).isEmpty } ? [] : processesMarked(mark)
    for pid in survivors { Glibc.kill(pid, SIGKILL) }
    guard before.count >= 9 else {
        return .wrong("only \(before.count) marked processes before the kill (want at least 9): \(line)")
    }
    guard survivors.isEmpty else {
        return .wrong(
            "\(survivors.count) of \(before.count) processes alive 5 s after the parent's SIGKILL: "
                + survivors.map { "\($0) \(commandLine($0))" }.joined(separator: "; "))
    }
    return .correct
}

/// The chaos program started again as a victim, its standard output a pipe to this process.
struct Victim {
    let pid: pid_t
    let output: Int32

    static func start(mark: String) throws -> Victim {
        var fds: [Int32] = [-1, -1]
        guard pipe(&fds) == 0 else { throw MultiprocessingError(.systemCall, "pipe", errno: errno) }
        _ = fcntl(fds[0], F_SETFD, FD_CLOEXEC)
        _ = fcntl(fds[1], F_SETFD, FD_CLOEXEC)
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
        let arguments = ["multiprocessing-chaos", "--victim"]
        var environment: [String] = []
        var entry = environ
        while let pointer = entry.pointee {
            environment.append(String(cString: pointer))
            entry += 1
        }
        environment.append(mark)
        var pid: pid_t = 0
        let result = withCStrings(arguments) { argv in
            withCStrings(environment) { envp in posix_spawn(&pid, "/proc/self/exe", &actions, nil, argv, envp) }
        }
        close(fds[1])
        guard result == 0 else {
            close(fds[0])
            throw MultiprocessingError(.systemCall, "posix_spawn of the victim", errno: result)
        }
        _ = fcntl(fds[0], F_SETFL, fcntl(fds[0], F_GETFL) | O_NONBLOCK)
        return Victim(pid: pid, output: fds[0])
    }

    /// The victim's first line, or nil when it exits or `within` passes first.
    func readLine(within timeout: Duration) async -> String? {
        var bytes: [UInt8] = []
        let deadline = ContinuousClock.now + timeout
        var buffer = [UInt8](repeating: 0, count: 512)
        while ContinuousClock.now < deadline {
            let count = read(output, &buffer, buffer.count)
            if count > 0 {
                bytes += buffer[..<count]
                if let end = bytes.firstIndex(of: 10) { return String(decoding: bytes[..<end], as: UTF8.self) }
            } else if count == 0 {
                return String(decoding: bytes, as: UTF8.self)
            } else {
                try? await Task.sleep(for: .milliseconds(5))
            }
        }
        return nil
    }

    /// SIGKILL, reap, and close the pipe.
    func kill() {
        Glibc.kill(pid, SIGKILL)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        close(output)
    }
}

func withCStrings<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    let pointers = strings.map { strdup($0) } + [nil]
    defer { pointers.forEach { free($0) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}

/// Library children a child keeps alive (grandchildren of the victim).
nonisolated(unsafe) var keptGrandchildren: [AnyChildProcess] = []

/// In a worker (which may not start library children, as in Python):
/// starts `sleep` with posix_spawn, as a task running a tool would, and returns its pid.
struct SpawnGrandchild: ProcessTask {
    func run() throws -> Int32 {
        var pid: pid_t = 0
        let result = withCStrings(["sleep", "100000"]) { argv in posix_spawn(&pid, "/bin/sleep", nil, nil, argv, environ) }
        guard result == 0 else { throw MultiprocessingError(.systemCall, "posix_spawn of /bin/sleep", errno: result) }
        return pid
    }
}

/// In a worker: forks a raw child (no library code) that waits forever, and returns its pid.
struct ForkGrandchild: ProcessTask {
    func run() -> Int32 {
        let pid = fork()
        if pid == 0 {
            while true { pause() }
        }
        return pid
    }
}

/// In a child: starts grandchildren of both re-executing methods, then waits forever.
struct StartGrandchildren: ProcessTask {
    func run() throws {
        for method in [StartMethod.spawn, .forkserver] {
            let child = try ChildProcess(HangForever(hang: .sleep), startMethod: method)
            try child.start()
            keptGrandchildren.append(child)
        }
        while true { pause() }
    }
}

/// The victim's side of `parent-kill`: start everything, say "ready", wait to
/// be killed. What goes wrong is said on standard output, to the chaos program.
func beVictim() async -> Never {
    do {
        try await startVictimProcesses()
    } catch {
        print("failed: \(error)")
        fflush(nil)
        exit(1)
    }
}

private func startVictimProcesses() async throws -> Never {
    let pool = try ProcessPool(workers: 3)
    var children: [AnyChildProcess] = []
    for method in [StartMethod.spawn, .forkserver] {
        let child = try ChildProcess(HangForever(hang: .sleep), startMethod: method)
        try child.start()
        children.append(child)
    }
    let middle = try ChildProcess(StartGrandchildren(), startMethod: .spawn)
    try middle.start()
    children.append(middle)
    let spawnedGrandchild = try await pool.apply(SpawnGrandchild())
    let rawGrandchild = try await pool.apply(ForkGrandchild())
    let busy = try pool.submit(HangForever(hang: .sleep))
    // The middle child's grandchildren are up once they carry the mark too.
    let mark = String(cString: getenv(markName))
    _ = await eventually(within: .seconds(30)) { processesMarked("\(markName)=\(mark)").count >= 11 }
    print("ready: children \(children.compactMap(\.pid)), grandchildren \(spawnedGrandchild) \(rawGrandchild)")
    fflush(nil)
    withExtendedLifetime((pool, children, busy)) {
        while true { pause() }
    }
    fatalError("a victim is only ever killed")
}

/// The fork server is killed with SIGKILL while one of its children runs (a
/// `ChildProcess`, or a pool's worker). Even trials: the child, told to
/// terminate, must report a real status (SIGTERM, or SIGKILL if it died
/// with the server), or `.unknown` when the kernel kept none; never an
/// invented exit code. A new fork-server child
/// must start and succeed. Odd trials: the pool must go on running items.
let forkServerKillFault = Fault(
    name: "forkserver-kill",
    summary: "the fork server is SIGKILLed while its children and a pool's workers run",
    deadline: .seconds(60)
) { index, arena in
    if index % 2 == 0 {
        let child = try ChildProcess(HangForever(hang: .sleep), startMethod: .forkserver)
        try child.start()
        guard let server = processStat(child.pid!)?.parent, server != getpid(), server > 1 else {
            try child.kill()
            try await child.join()
            return .wrong("the fork-server child \(child.pid!) has no fork server for a parent")
        }
        try await killAndAwait(server)
        try? child.terminate()
        try await child.join()
        let status = child.terminationStatus
        try child.close()
        // .unknown is what the library says when neither the server nor the
        // kernel (a pidfd's exit info, Linux 6.15, once init has reaped the
        // orphan: within 5 s) could tell; never an invented exit code.
        guard status == .signaled(.terminate) || status == .signaled(.kill) || status == .unknown else {
            return .wrong("a child whose fork server was killed was reported as \(status.map { "\($0)" } ?? "nil")")
        }
        return try await nextForkServerChildRuns()
    } else {
        // A pool of its own each time: its worker outlives the server (the
        // worker's lifeline is to this process), so a worker kept from an
        // earlier trial would have init for a parent.
        let pool = try ProcessPool(workers: 1)
        let outcome = await Result(catching: { try await runPastServerDeath(pool) })
        await pool.terminate()
        return try outcome.get()
    }
}

/// Kills the fork server of `pool`'s worker; the worker must go on running items.
func runPastServerDeath(_ pool: ProcessPool) async throws -> Verdict {
    let server = try await pool.apply(ParentPID())
    guard server != getpid(), server > 1 else { return .wrong("the worker's parent is \(server), not a fork server") }
    try await killAndAwait(server)
    do {
        let result = try await pool.apply(Nap(milliseconds: 1))
        guard result == 1 else { return .wrong("an item after the server's death returned \(result)") }
    } catch {
        return .wrong("an item after the fork server's death failed: \(Observed(error))")
    }
    return try await nextForkServerChildRuns()
}

/// After the server's death, the next fork-server child starts (the dead
/// server is reaped, and a new one started, there) and succeeds.
func nextForkServerChildRuns() async throws -> Verdict {
    let next = try ChildProcess(Nothing(), startMethod: .forkserver)
    try next.start()
    try await next.join()
    defer { try? next.close() }
    return next.terminationStatus == .exited(0)
        ? .correct : .wrong("the next fork-server child after the server's death: \(next.terminationStatus!)")
}

/// Sends SIGKILL to `pid` and waits until it is gone (or a zombie).
func killAndAwait(_ pid: pid_t) async throws {
    guard Glibc.kill(pid, SIGKILL) == 0 else {
        throw MultiprocessingError(.systemCall, "kill(\(pid), SIGKILL)", errno: errno)
    }
    for _ in 0..<2000 {
        guard let state = processState(pid), state != "Z", state != "X" else { return }
        try await Task.sleep(for: .milliseconds(5))
    }
}
