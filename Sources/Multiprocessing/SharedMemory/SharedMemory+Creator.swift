#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import CMultiprocessing

/// Who created a named segment that is not persistent: a small companion
/// name, `swift-mp-creator.<name>`, holds the creator's pid and start time.
/// Every create and open of a named segment, in any process that uses the
/// library, first removes the segments whose creator has died (Python's
/// resource tracker, without its extra process): a creator killed by
/// SIGKILL leaves its name behind only until the next one.
enum SegmentCreators {
    static let prefix = "swift-mp-creator."
    /// Room that the companion's prefix takes from the 255 bytes of a name in `/dev/shm`.
    static let longestName = 255 - prefix.utf8.count

    private struct Record {
        var pid: Int32
        var startTime: UInt64
    }

    /// Records this process as the creator of `name`.
    static func record(_ name: String) throws {
        let path = "/" + prefix + name
        let fd = try Platform.openSharedMemory(
            path, O_RDWR | O_CREAT | O_TRUNC, mode: 0o600, what: "the creator record of '\(name)'")
        defer { Platform.close(fd) }
        var record = (getpid(), startTime(of: getpid()) ?? 0)
        let code = withUnsafeBytes(of: &record) { mp_write_all(fd, $0.baseAddress, $0.count) }
        if code != 0 {
            Platform.unlinkSharedMemory(path)
            throw Platform.error("writing the creator record of '\(name)'", code)
        }
    }

    /// Forgets the creator of `name` (its name is removed).
    static func forget(_ name: String) {
        Platform.unlinkSharedMemory("/" + prefix + name)
    }

    /// Removes every non-persistent segment whose creator is no longer alive.
    static func sweep() {
        #if os(Linux)
            guard let directory = opendir("/dev/shm") else { return }
            var orphans: [String] = []
            while let entry = readdir(directory) {
                let file = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                guard file.hasPrefix(prefix) else { continue }
                let name = String(file.dropFirst(prefix.count))
                if let record = read(file), !isAlive(record) { orphans.append(name) }
            }
            closedir(directory)
            for name in orphans {
                Platform.unlinkSharedMemory("/" + name)
                forget(name)
            }
        #endif
    }

    private static func read(_ file: String) -> Record? {
        guard let fd = try? Platform.openSharedMemory("/" + file, O_RDONLY, what: "a creator record") else { return nil }
        defer { Platform.close(fd) }
        var record: (Int32, UInt64) = (0, 0)
        let count = withUnsafeMutableBytes(of: &record) { Platform.readFromStart(fd, into: $0) }
        // A record being written right now is not yet complete: leave it.
        guard count == MemoryLayout<(Int32, UInt64)>.size, record.0 > 0 else { return nil }
        return Record(pid: record.0, startTime: record.1)
    }

    private static func isAlive(_ record: Record) -> Bool {
        if !Platform.exists(record.pid) { return false }
        // The pid may have been reused by a process started later.
        if record.startTime != 0, let now = startTime(of: record.pid), now != record.startTime { return false }
        return true
    }

    /// The process's start time in clock ticks since boot (field 22 of `/proc/<pid>/stat`).
    private static func startTime(of pid: Int32) -> UInt64? {
        #if os(Linux)
            let fd = Glibc.open("/proc/\(pid)/stat", O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { return nil }
            defer { Platform.close(fd) }
            var buffer = [UInt8](repeating: 0, count: 1024)
            let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            guard count > 0, let close = buffer[..<count].lastIndex(of: UInt8(ascii: ")")) else { return nil }
            // After the command's closing parenthesis: field 3 onwards; the start time is the 20th of them.
            let fields = buffer[(close + 1)..<count].split(separator: UInt8(ascii: " "))
            guard fields.count > 19 else { return nil }
            return UInt64(String(decoding: fields[19], as: UTF8.self))
        #else
            return nil
        #endif
    }
}
