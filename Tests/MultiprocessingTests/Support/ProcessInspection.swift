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
