// An async main.swift, as a newcomer writes one: top-level constants, an
// `await` before the first process, so other threads run when the program
// first starts one. Its children must still see the constants, with the
// default start method too, and signals must reach them.
#if canImport(Glibc)
    import Glibc
#endif
import Multiprocessing

let answer = 20_000
let greeting = "hello from an async main.swift"

struct ReadGlobals: ProcessTask {
    func run() -> String { "\(answer) \(greeting)" }
}

struct SleepLong: ProcessTask {
    func run() { sleep(60) }
}

func threadCount() -> Int {
    (try? FileManager.contentsOfDirectory("/proc/self/task")) ?? 0
}

enum FileManager {
    static func contentsOfDirectory(_ path: String) throws -> Int {
        guard let directory = opendir(path) else { return 0 }
        defer { closedir(directory) }
        var count = 0
        while let entry = readdir(directory) {
            if entry.pointee.d_name.0 != UInt8(ascii: ".") { count += 1 }
        }
        return count
    }
}

/// Runs on the global executor, which starts its threads.
@concurrent func onTheGlobalExecutor() async -> Int {
    await withTaskGroup(of: Int.self) { group in
        for index in 0..<4 { group.addTask { index } }
        return await group.reduce(0, +)
    }
}

print("before the first process")
_ = await onTheGlobalExecutor()
print("threads at the first start: \(threadCount())")
for method in [StartMethod.spawn, .forkserver] {
    let child = try ChildProcess(ReadGlobals(), startMethod: method)
    try child.start()
    try await child.join()
    print("child \(method): \(try child.value)")
    let pool = try ProcessPool(workers: 2, options: PoolOptions(startMethod: method))
    print("pool \(method): \(try await pool.submit(ReadGlobals()).value)")
    pool.close()
    await pool.join()
}
let defaultChild = try ChildProcess(ReadGlobals())
try defaultChild.start()
try await defaultChild.join()
print("child default: \(try defaultChild.value)")
// A child started from a thread of the global executor (whose signals are
// blocked) must still be stoppable.
let sleeper = try ChildProcess(SleepLong())
try sleeper.start()
try sleeper.terminate()
let ended = try await sleeper.join(timeout: .seconds(10))
print("sleeper ended: \(ended), \(sleeper.terminationStatus.map { "\($0)" } ?? "running")")
