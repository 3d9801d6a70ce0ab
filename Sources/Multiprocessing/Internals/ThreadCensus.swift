#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import CMultiprocessing

/// The threads of this process other than the caller, told apart into the
/// library's own and the others, by name (/proc/self/task/*/comm).
///
/// The library names its threads `mp-...` (a pool's engine, the threads that
/// make blocking calls for async code, the lifeline watchers). They never
/// hold a lock a forked child needs, so a fork does not count them, and a
/// second ``ForkingPool`` is not refused because of the first one's thread.
struct ThreadCensus {
    static let poolEngineThreadName = "mp-pool-engine"
    static let blockingThreadName = "mp-blocking"
    static let ownPrefix = "mp-"

    /// How many of the library's own threads run, besides the caller.
    var own = 0
    /// The names of the other threads, besides the caller.
    var others: [String] = []

    /// This process's threads now; on a system without /proc, every thread
    /// but the caller and the library's C threads counts as another, unnamed.
    static func take() -> ThreadCensus {
        var census = ThreadCensus()
        guard let directory = opendir("/proc/self/task") else {
            let count = max(0, Int(mp_thread_count()) - 1 - Int(mp_own_thread_count()))
            census.others = Array(repeating: "?", count: count)
            return census
        }
        defer { closedir(directory) }
        let caller = mp_current_thread_id()
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) {
                String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self)
            }
            guard let tid = Int32(name), tid != caller else { continue }
            let comm = threadName(tid)
            if comm.hasPrefix(ownPrefix) {
                census.own += 1
            } else {
                census.others.append(comm)
            }
        }
        return census
    }

    /// The other threads for a message: `"worker" ×2, "main"`, most common first.
    var othersDescription: String {
        var counts: [String: Int] = [:]
        for name in others { counts[name, default: 0] += 1 }
        return counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
            .map { $0.value == 1 ? "\"\($0.key)\"" : "\"\($0.key)\" ×\($0.value)" }
            .joined(separator: ", ")
    }

    private static func threadName(_ tid: Int32) -> String {
        let fd = open("/proc/self/task/\(tid)/comm", O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return "?" }
        defer { Platform.close(fd) }
        var bytes = [UInt8](repeating: 0, count: 64)
        let count = read(fd, &bytes, bytes.count)
        guard count > 0 else { return "?" }
        return String(decoding: bytes[..<count], as: UTF8.self).trimmingNewline()
    }
}

extension String {
    fileprivate func trimmingNewline() -> String {
        hasSuffix("\n") ? String(dropLast()) : self
    }
}
