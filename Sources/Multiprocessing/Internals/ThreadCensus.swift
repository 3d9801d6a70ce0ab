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
/// make blocking calls for async code, the lifeline watchers), and a fork
/// does not count them: a second ``ForkingPool`` is not refused because of
/// the first one's thread. A pool's engine runs Swift code only inside the
/// fork gate (`mp_fork_gate_enter`), which every fork waits for, so a child
/// never inherits a runtime lock it held; the lifeline watchers run only C.
/// The threads for blocking calls spend their time waiting in the kernel but
/// are not gated: a fork while one runs the Swift code around its call (the
/// decoding of a message it received) could still catch a runtime lock.
struct ThreadCensus {
    static let poolEngineThreadName = "mp-pool-engine"
    static let blockingThreadName = "mp-blocking"
    static let ownPrefix = "mp-"

    /// The main thread's entry in ``others``, when the caller is another thread.
    static let mainThreadLabel = "the main thread"

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
            // A thread that ended since the directory was read holds nothing.
            guard let comm = threadName(tid) else { continue }
            if tid == getpid() {
                // The caller runs elsewhere: an async main's code runs on
                // Dispatch's threads while the main thread waits in its loop.
                census.others.append(mainThreadLabel)
            } else if comm.hasPrefix(ownPrefix) {
                census.own += 1
            } else {
                census.others.append(comm)
            }
        }
        return census
    }

    /// The other threads for a message: Dispatch's (whose names end in
    /// `qos` or `overcommit`: Swift concurrency's tasks run on them) apart
    /// from the rest, each name with its count, most common first.
    var othersDescription: String {
        let dispatch = others.filter(Self.isDispatchThread)
        let rest = others.filter { !Self.isDispatchThread($0) && $0 != Self.mainThreadLabel }
        var parts: [String] = []
        if others.contains(Self.mainThreadLabel) {
            parts.append("the main thread (an async main leaves it waiting in Dispatch's main loop)")
        }
        if !dispatch.isEmpty {
            parts.append(
                "\(dispatch.count) of Dispatch, which runs Swift concurrency's tasks (\(Self.counted(dispatch)))")
        }
        if !rest.isEmpty {
            let program = String(cString: mp_program_name())
            let hint =
                rest.contains { !program.isEmpty && program.hasPrefix($0) }
                ? ", named like the program: started by it or a library it uses" : ""
            parts.append("\(rest.count) more (\(Self.counted(rest))\(hint))")
        }
        return parts.joined(separator: "; ")
    }

    private static func isDispatchThread(_ name: String) -> Bool {
        name.hasSuffix("qos") || name.hasSuffix("overcommit") || name.hasPrefix("com.apple.")
    }

    private static func counted(_ names: [String]) -> String {
        var counts: [String: Int] = [:]
        for name in names { counts[name, default: 0] += 1 }
        return counts.sorted { $0.value != $1.value ? $0.value > $1.value : $0.key < $1.key }
            .map { $0.value == 1 ? "\"\($0.key)\"" : "\"\($0.key)\" ×\($0.value)" }
            .joined(separator: ", ")
    }

    /// The thread's name; nil once it has ended (its entry is gone).
    private static func threadName(_ tid: Int32) -> String? {
        Platform.readSmallFile("/proc/self/task/\(tid)/comm", limit: 64)?.trimmingNewline()
    }
}

extension String {
    fileprivate func trimmingNewline() -> String {
        hasSuffix("\n") ? String(dropLast()) : self
    }
}
