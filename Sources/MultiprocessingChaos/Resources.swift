#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import CMultiprocessingChaos

/// What this process holds, counted from /proc and the allocator.
struct Usage: Sendable {
    var descriptorNames: Set<String>
    var descriptors: Int { descriptorNames.count - 1 }  // less the listing's own descriptor
    var zombies: Int
    var threads: Int
    /// Bytes in use in the heap (`mallinfo2`'s `uordblks + hblkhd`).
    var heap: Int
    var residentBytes: Int

    static func now() -> Usage {
        Usage(
            descriptorNames: Set(entries(of: "/proc/self/fd")),
            zombies: childPIDs().filter { processState($0) == "Z" }.count,
            threads: entries(of: "/proc/self/task").count,
            heap: heapInUse(),
            residentBytes: currentResidentBytes())
    }
}

func heapInUse() -> Int { Int(chaos_heap_in_use()) }

func currentResidentBytes() -> Int {
    guard let text = readFile("/proc/self/statm") else { return 0 }
    let fields = text.split(separator: " ")
    guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
    return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
}

/// What the descriptors opened since `before` point to, for reports.
func descriptorsOpened(since before: Set<String>) -> String {
    Set(entries(of: "/proc/self/fd")).subtracting(before).sorted().map { fd in
        var target = [CChar](repeating: 0, count: 256)
        let count = readlink("/proc/self/fd/\(fd)", &target, target.count - 1)
        return "\(fd) -> \(count > 0 ? String(cString: target) : "?")"
    }.joined(separator: ", ")
}

/// The names in a directory, without "." and "..".
func entries(of path: String) -> [String] {
    guard let directory = opendir(path) else { return [] }
    defer { closedir(directory) }
    var names: [String] = []
    while let entry = readdir(directory) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) {
            String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
        }
        if name != "." && name != ".." { names.append(name) }
    }
    return names
}

/// A whole small file of /proc (up to 1 MiB), or nil when it cannot be read.
func readFile(_ path: String) -> String? {
    readBytes(path).map { String(decoding: $0, as: UTF8.self) }
}

func readBytes(_ path: String) -> [UInt8]? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    var result: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while result.count < 1 << 20 {
        let count = read(fd, &buffer, buffer.count)
        if count < 0 && errno == EINTR { continue }
        guard count > 0 else { break }
        result += buffer[..<count]
    }
    return result
}

/// The state letter (R, S, Z, ...) and parent pid of a process, from /proc/PID/stat.
func processStat(_ pid: Int32) -> (state: Character, parent: Int32)? {
    guard let text = readFile("/proc/\(pid)/stat"), let close = text.lastIndex(of: ")") else { return nil }
    let fields = text[text.index(after: close)...].split(separator: " ")
    guard fields.count > 1, let state = fields[0].first, let parent = Int32(fields[1]) else { return nil }
    return (state, parent)
}

func processState(_ pid: Int32) -> Character? { processStat(pid)?.state }

/// This process's children, from /proc/self/task/*/children.
func childPIDs() -> [Int32] {
    entries(of: "/proc/self/task").flatMap { task in
        (readFile("/proc/self/task/\(task)/children") ?? "").split(separator: " ").compactMap { Int32($0) }
    }
}

/// Live processes (not zombies) whose environment holds `marker` (`NAME=value`).
func processesMarked(_ marker: String) -> [Int32] {
    let needle = Array(marker.utf8) + [0]
    return entries(of: "/proc").compactMap { Int32($0) }.filter { pid in
        guard let environment = readBytes("/proc/\(pid)/environ"), contains(environment, needle) else { return false }
        guard let state = processState(pid) else { return false }
        return state != "Z" && state != "X"
    }
}

private func contains(_ haystack: [UInt8], _ needle: [UInt8]) -> Bool {
    // Entries are NUL-separated: look for the needle at the start or after a NUL.
    guard needle.count <= haystack.count else { return false }
    var index = 0
    while index + needle.count <= haystack.count {
        if (index == 0 || haystack[index - 1] == 0) && haystack[index..<index + needle.count].elementsEqual(needle) {
            return true
        }
        index += 1
    }
    return false
}

/// The command line of a process, for reports.
func commandLine(_ pid: Int32) -> String {
    let bytes = readBytes("/proc/\(pid)/cmdline") ?? []
    return String(decoding: bytes.map { $0 == 0 ? 32 : $0 }, as: UTF8.self)
}

/// Polls `condition` every 5 ms until it holds or `timeout` passes.
func eventually(within timeout: Duration, _ condition: () -> Bool) async -> Bool {
    let deadline = ContinuousClock.now + timeout
    while ContinuousClock.now < deadline {
        if condition() { return true }
        try? await Task.sleep(for: .milliseconds(5))
    }
    return condition()
}

/// The number of bytes, for reports: "1.5 MiB".
func bytesText(_ count: Int) -> String {
    let magnitude = abs(count)
    if magnitude >= 1 << 20 { return "\(count / (1 << 20)).\((magnitude % (1 << 20)) * 10 / (1 << 20)) MiB" }
    if magnitude >= 1 << 10 { return "\(count / (1 << 10)) KiB" }
    return "\(count) B"
}
