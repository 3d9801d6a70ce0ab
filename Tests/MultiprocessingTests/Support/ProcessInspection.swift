#if canImport(Glibc)
    import Glibc
#endif
import Foundation

/// The descriptors this process has open, from /proc/self/fd.
func openDescriptors() -> [Int32] {
    guard let directory = opendir("/proc/self/fd") else { return [] }
    defer { closedir(directory) }
    let own = dirfd(directory)
    var result: [Int32] = []
    while let entry = readdir(directory) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        if let fd = Int32(name), fd != own { result.append(fd) }
    }
    return result.sorted()
}

/// The state letter of a process (R, S, Z, ...) or nil when it does not exist.
func processState(_ pid: Int32) -> Character? {
    let fd = open("/proc/\(pid)/stat", O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes = [UInt8](repeating: 0, count: 512)
    let count = read(fd, &bytes, bytes.count)
    guard count > 0 else { return nil }
    let text = String(decoding: bytes[..<count], as: UTF8.self)
    guard let close = text.lastIndex(of: ")") else { return nil }
    return text[text.index(close, offsetBy: 2)]
}

/// Whether this test process (and so every program the tests built) runs
/// under AddressSanitizer (`swift test --sanitize=address`).
let runningUnderAddressSanitizer = dlsym(nil, "__asan_init") != nil

/// Whether this test process (and so every program the tests built) runs
/// under ThreadSanitizer (`swift test --sanitize=thread`).
let runningUnderThreadSanitizer = dlsym(nil, "__tsan_init") != nil

/// Whether the forks of a spawned, single-threaded test child accept other
/// threads. Under ThreadSanitizer no process is single-threaded: the
/// sanitizer runs a thread of its own from the start, which it stops and
/// restarts around each fork, so those forks are sound and are let through.
let forksAllowOtherThreads = runningUnderThreadSanitizer

/// The parent's pid of a process, from /proc/<pid>/stat; nil when it does not exist.
func parentPID(of pid: Int32) -> Int32? {
    let fd = open("/proc/\(pid)/stat", O_RDONLY)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var bytes = [UInt8](repeating: 0, count: 512)
    let count = read(fd, &bytes, bytes.count)
    guard count > 0 else { return nil }
    let text = String(decoding: bytes[..<count], as: UTF8.self)
    guard let close = text.lastIndex(of: ")") else { return nil }
    return text[text.index(close, offsetBy: 2)...].split(separator: " ").dropFirst().first.flatMap { Int32($0) }
}

/// Whether a process is gone: it does not exist, or only as a zombie of another parent.
func isGone(_ pid: Int32) -> Bool {
    guard let state = processState(pid) else { return true }
    return state == "Z" || state == "X"
}

/// The pids of this process's children that are zombies.
func zombieChildren() -> [Int32] {
    childPIDs().filter { processState($0) == "Z" }
}

/// The pids of this process's children, from /proc/self/task/*/children.
func childPIDs() -> [Int32] {
    guard let directory = opendir("/proc/self/task") else { return [] }
    defer { closedir(directory) }
    var result: [Int32] = []
    while let entry = readdir(directory) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        guard Int32(name) != nil else { continue }
        let fd = open("/proc/self/task/\(name)/children", O_RDONLY)
        guard fd >= 0 else { continue }
        var bytes = [UInt8](repeating: 0, count: 65536)
        let count = read(fd, &bytes, bytes.count)
        close(fd)
        guard count > 0 else { continue }
        result += String(decoding: bytes[..<count], as: UTF8.self).split(separator: " ").compactMap { Int32($0) }
    }
    return result
}

/// Polls `condition` until it holds or `timeout` passes.
func eventually(within timeout: Duration, _ condition: () -> Bool) -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return true }
        usleep(5000)
    }
    return condition()
}

/// Runs the test programs' executable (`Tests/Programs`, built beside the
/// tests) with `arguments`; returns its exit status and what it printed.
func runTestProgram(
    _ arguments: [String], program: String = "MultiprocessingTestPrograms"
) throws -> (status: Int32, output: String) {
    let directory = (try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") as NSString)
        .deletingLastPathComponent
    let process = Foundation.Process()
    process.executableURL = URL(fileURLWithPath: directory + "/" + program)
    process.arguments = arguments
    // A whole program's exit under LeakSanitizer reports what its top-level
    // code still held, and drops its buffered output: not what these test.
    if runningUnderAddressSanitizer {
        process.environment = ProcessInfo.processInfo.environment.merging(["ASAN_OPTIONS": "detect_leaks=0"]) { $1 }
    }
    let pipe = Pipe()
    process.standardOutput = pipe
    process.standardError = pipe
    try process.run()
    let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    process.waitUntilExit()
    return (process.terminationStatus, output)
}

/// Runs a test program (by default the test programs' executable,
/// `Tests/Programs`) as a parent may start it: with
/// `blocked` signals in its mask (posix_spawnattr_setsigmask) and `ignored`
/// ones at SIG_IGN (set by a shell's `trap ''` before it execs the program;
/// both survive exec). Kills it after `timeout`. Returns its wait status,
/// standard output and standard error, and how long it ran.
func runTestProgram(
    _ arguments: [String], program name: String = "MultiprocessingTestPrograms", blocking blocked: [Int32] = [],
    ignoring ignored: [Int32] = [], timeout: Duration
) throws -> (status: Int32, output: String, errors: String, elapsed: Duration, timedOut: Bool) {
    let directory = (try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") as NSString)
        .deletingLastPathComponent
    let program = directory + "/" + name
    // See runTestProgram(_:program:): no LeakSanitizer exit check for whole programs.
    let sanitizer = runningUnderAddressSanitizer ? "export ASAN_OPTIONS=detect_leaks=0; " : ""
    let traps = ignored.map { "trap '' \($0); " }.joined()
    let argv = ["/bin/sh", "-c", traps + sanitizer + "exec \"$0\" \"$@\"", program] + arguments
    var outPipe: [Int32] = [0, 0]
    var errPipe: [Int32] = [0, 0]
    guard pipe(&outPipe) == 0, pipe(&errPipe) == 0 else { throw POSIXError(.EMFILE) }
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
    posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
    var attributes = posix_spawnattr_t()
    posix_spawnattr_init(&attributes)
    var mask = sigset_t()
    sigemptyset(&mask)
    for signal in blocked { sigaddset(&mask, signal) }
    posix_spawnattr_setsigmask(&attributes, &mask)
    posix_spawnattr_setpgroup(&attributes, 0)
    posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETPGROUP))
    var pid: pid_t = 0
    let cStrings = argv.map { strdup($0) } + [nil]
    defer { for pointer in cStrings { free(pointer) } }
    let result = posix_spawn(&pid, "/bin/sh", &actions, &attributes, cStrings, environ)
    posix_spawn_file_actions_destroy(&actions)
    posix_spawnattr_destroy(&attributes)
    close(outPipe[1])
    close(errPipe[1])
    defer {
        close(outPipe[0])
        close(errPipe[0])
    }
    guard result == 0 else { throw POSIXError(POSIXErrorCode(rawValue: result) ?? .EINVAL) }
    let started = ContinuousClock.now
    var output: [UInt8] = []
    var errors: [UInt8] = []
    var open = [outPipe[0]: true, errPipe[0]: true]
    var timedOut = false
    while open.values.contains(true) {
        let left = timeout - (ContinuousClock.now - started)
        if left <= .zero {
            timedOut = true
            break
        }
        var polls = open.filter(\.value).map { pollfd(fd: $0.key, events: Int16(POLLIN), revents: 0) }
        let milliseconds = Int32(left.components.seconds * 1000 + left.components.attoseconds / 1_000_000_000_000_000)
        guard poll(&polls, nfds_t(polls.count), max(1, milliseconds)) >= 0 || errno == EINTR else { break }
        for entry in polls where entry.revents != 0 {
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = read(entry.fd, &buffer, buffer.count)
            if count <= 0 {
                open[entry.fd] = false
            } else if entry.fd == outPipe[0] {
                output += buffer[..<count]
            } else {
                errors += buffer[..<count]
            }
        }
    }
    // The whole group: the program and any process it left behind.
    if timedOut { kill(-pid, SIGKILL) }
    var status: Int32 = 0
    while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
    return (
        status, String(decoding: output, as: UTF8.self), String(decoding: errors, as: UTF8.self),
        ContinuousClock.now - started, timedOut
    )
}
