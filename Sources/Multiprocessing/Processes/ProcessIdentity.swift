#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import CMultiprocessing
import Synchronization

/// Who a process is, as this library sees it (Python's `current_process()`).
public struct ProcessIdentity: Hashable, Sendable, CustomStringConvertible {
    /// The process's name: `MainProcess` for the program itself, the name given
    /// to ``ChildProcess`` for a child.
    public var name: String
    /// The process id.
    public var pid: Int32
    /// Whether the process was started as a daemon (see ``AnyChildProcess/daemon``).
    public var daemon: Bool
    /// The parent's pid, when this process was started by this library.
    public var parentPID: Int32
    /// The parent's name, when this process was started by this library.
    public var parentName: String
    /// Whether this process was started by this library.
    public var isChild: Bool { parentPID != 0 }

    /// Whether this process prints an error its task throws (see ``AnyChildProcess/printsErrors``).
    var printsErrors = true

    public var description: String { "\(name) (pid \(pid))" }

    private static let state = ForkSafeMutex(
        ProcessIdentity(name: "MainProcess", pid: 0, daemon: false, parentPID: 0, parentName: ""))

    /// The current process.
    public static var current: ProcessIdentity {
        var identity = state.withLock { $0 }
        identity.pid = getpid()
        return identity
    }

    static func becomeChild(
        name: String, daemon: Bool, parentPID: Int32, parentName: String, printsErrors: Bool = true
    ) {
        state.withLock {
            $0 = ProcessIdentity(name: name, pid: 0, daemon: daemon, parentPID: parentPID, parentName: parentName)
            $0.printsErrors = printsErrors
        }
    }
}

/// The names a child of this library shows the world: `myapp: pool worker 0`,
/// `myapp: child Square`, `myapp: fork server` in `ps` and
/// /proc/<pid>/cmdline, and the part after the colon (cut to 15 bytes) in
/// `top` and /proc/<pid>/comm.
enum ProcessTitle {
    /// Names this process `program: role`.
    static func set(_ role: String) {
        // Swift's copy of the arguments is made before they are overwritten.
        _ = CommandLine.arguments
        let program = String(cString: mp_program_name())
        mp_set_process_title("\(program): \(role)", role)
    }
}

/// The current process (Python's `multiprocessing.current_process()`).
public var currentProcess: ProcessIdentity { ProcessIdentity.current }

/// The process that started this one, or `nil` in a program not started by
/// this library (Python's `multiprocessing.parent_process()`).
public var parentProcess: ParentProcess? {
    let identity = ProcessIdentity.current
    return identity.isChild ? ParentProcess(name: identity.parentName, pid: identity.parentPID) : nil
}

/// The process that started this one, as its child sees it (Python's
/// `parent_process()`): its name and pid, whether it still runs, and a wait
/// for its end.
///
/// - Important: A child of this library is killed when its parent dies, so
///   ``join(timeout:)`` returns `true` only in the moment before that.
public struct ParentProcess: Hashable, Sendable, CustomStringConvertible {
    /// The parent's name (`MainProcess` for the program itself).
    public var name: String
    /// The parent's process id.
    public var pid: Int32

    public var description: String { "\(name) (pid \(pid))" }

    /// Whether the parent still runs.
    ///
    /// The corresponding C functions are `pidfd_open` and `poll`.
    public var isAlive: Bool { !Self.hasEnded(pid, timeoutMilliseconds: 0) }

    /// Waits until the parent has ended, or `timeout` has passed.
    ///
    /// - Parameter timeout: How long to wait; `nil` waits for as long as it takes.
    /// - Returns: Whether the parent has ended.
    @available(*, noasync, message: "Blocks the calling thread")
    public func join(timeout: Duration? = nil) -> Bool {
        let milliseconds = timeout.map { timeout in
            let (seconds, attoseconds) = timeout.components
            return Int32(clamping: max(0, seconds * 1000 + attoseconds / 1_000_000_000_000_000))
        }
        return Self.hasEnded(pid, timeoutMilliseconds: milliseconds ?? -1)
    }

    private static func hasEnded(_ pid: Int32, timeoutMilliseconds: Int32) -> Bool {
        let pidfd = mp_pidfd_open(pid)
        guard pidfd >= 0 else {
            // No pidfd: the process is gone once it cannot be signalled.
            let deadline = ContinuousClock.now + .milliseconds(Int(max(0, timeoutMilliseconds)))
            while true {
                if !Platform.exists(pid) { return true }
                if timeoutMilliseconds >= 0 && ContinuousClock.now >= deadline { return false }
                usleep(10_000)
            }
        }
        defer { Platform.close(pidfd) }
        var entry = pollfd(fd: pidfd, events: Int16(POLLIN), revents: 0)
        while true {
            let ready = poll(&entry, 1, timeoutMilliseconds)
            if ready >= 0 { return ready > 0 }
            if errno != EINTR { return false }
        }
    }
}

/// The children started by this process that are still running (Python's
/// `multiprocessing.active_children()`). Finished children are reaped on the
/// way, so none is left a zombie.
public func activeChildren() -> [AnyChildProcess] {
    ChildRegistry.shared.active()
}

/// How many CPUs this process may use: the CPUs in its affinity mask, and no
/// more than its cgroup's CPU quota (rounded up) allows. Python's
/// `os.process_cpu_count()`, plus the container quota. At least 1.
public func availableCPUCount() -> Int {
    var count = Int(mp_affinity_cpu_count())
    if count <= 0 { count = Platform.onlineCPUCount }
    if let quota = cgroupCPUQuota() { count = min(count, quota) }
    return max(1, count)
}

/// The cgroup v2 `cpu.max` limit of this process's cgroup (and its parents), in whole CPUs.
private func cgroupCPUQuota() -> Int? {
    guard let membership = Platform.readSmallFile("/proc/self/cgroup") else { return nil }
    var path: String?
    for line in membership.split(separator: "\n") where line.hasPrefix("0::") {
        path = String(line.dropFirst(3))
    }
    guard var directory = path else { return nil }
    var limit: Int?
    while true {
        let file = "/sys/fs/cgroup" + (directory == "/" ? "" : directory) + "/cpu.max"
        if let text = Platform.readSmallFile(file) {
            let fields = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
            if fields.count >= 2, let quota = Double(fields[0]), let period = Double(fields[1]), period > 0 {
                let cpus = Int((quota / period).rounded(.up))
                limit = min(limit ?? cpus, max(1, cpus))
            }
        }
        if directory == "/" || directory.isEmpty { break }
        if let slash = directory.lastIndex(of: "/") {
            directory = slash == directory.startIndex ? "/" : String(directory[..<slash])
        } else {
            break
        }
    }
    return limit
}
