// An async main.swift, for the closure forms (`ForkingPool`,
// `ChildProcess { }`) in an async program: the recipes
// the README gives, run by the tests.
//
//     MultiprocessingAsyncClosureProgram
#if canImport(Glibc)
    import Glibc
#endif
import Multiprocessing

let scale = 3

// Recipe 1: create the ForkingPool in top-level code before the first
// `await`, while the program runs only its main thread; use it from async
// code afterwards.
let early = try ForkingPool(workers: 2) { (n: Int) in n * scale }
let second = try ForkingPool(workers: 1) { (n: Int) in n + scale }
print("threads before the first await: \(threadNames())")

func threadNames() -> [String] {
    var names: [String] = []
    guard let directory = opendir("/proc/self/task") else { return names }
    defer { closedir(directory) }
    while let entry = readdir(directory) {
        let tid = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        guard Int32(tid) != nil, let file = fopen("/proc/self/task/\(tid)/comm", "r") else { continue }
        var buffer = [CChar](repeating: 0, count: 64)
        if fgets(&buffer, 64, file) != nil {
            names.append(String(cString: buffer).trimmingCharacters(in: "\n"))
        }
        fclose(file)
    }
    return names.sorted()
}

extension String {
    func trimmingCharacters(in character: Character) -> String {
        String(self.filter { $0 != character })
    }
}

// Swift concurrency's threads start here.
try await Task.sleep(for: .milliseconds(50))
await withTaskGroup(of: Void.self) { group in
    for _ in 0..<4 { group.addTask { try? await Task.sleep(for: .milliseconds(20)) } }
}

var results: [Int] = []
for try await value in early.map(Array(0..<8)) { results.append(value) }
print("early pool map: \(results == (0..<8).map { $0 * scale })")
print("second pool apply: \(try await second.apply(4))")

// Now other threads run: the closure forms are refused, and the refusal names them.
do {
    _ = try ForkingPool(workers: 1) { (n: Int) in n }
    print("late pool: accepted")
} catch let error as MultiprocessingError {
    print("late pool refused: \(error.code == .unsafeFork): \(error)")
}
do {
    let child = try ChildProcess { 1 }
    try child.start()
    print("late child: accepted")
} catch let error as MultiprocessingError {
    print("late fork child refused: \(error.code == .unsafeFork)")
}

// Recipe 2: accept the risk with allowingOtherThreads: true.
let risky = try ForkingPool(workers: 2, allowingOtherThreads: true) { (n: Int) in n - scale }
print("risky pool map: \(try await risky.map(Array(0..<8)).collect() == (0..<8).map { $0 - scale })")
await risky.terminate()
print("risky pool terminated")

let value = try ChildProcess(allowingOtherThreads: true) { scale * 14 }
try value.start()
try await value.join()
print("fork child value: \(try value.value)")

let sleeper = try ChildProcess(allowingOtherThreads: true) { () async throws -> Void in
    while true { pause() }
}
try sleeper.start()
try sleeper.terminate()
try await sleeper.join()
print("fork child terminated: \(sleeper.terminationStatus.map(String.init(describing:)) ?? "running")")

await early.terminate()
await second.terminate()
print("done")
