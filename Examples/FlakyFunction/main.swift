// A flaky C function, called on 500 inputs: it crashes on some and never
// returns on others. Each call runs in a pool worker with a timeout, so a
// crash or a hang fails that input alone, with its own error, and the others
// go on. The same program in Python is flaky_function.py, beside this file.
//
//     swift run FlakyFunction [count]
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import Multiprocessing

/// Stands for a function of a C library that is not ours to fix: it
/// dereferences a bad pointer on some records and loops forever on others.
func decodeRecord(_ id: Int32) -> Int32 {
    if id % 37 == 36 {
        let record = UnsafeMutablePointer<Int32>(bitPattern: 16)!
        return record.pointee  // SIGSEGV
    }
    if id % 53 == 52 {
        while true { pause() }  // never returns
    }
    return id &* 3 &+ 1
}

/// Calls the C function in a worker process.
enum DecodeRecord: ProcessFunction {
    static func call(_ id: Int32) -> Int32 { decodeRecord(id) }
}

let count = CommandLine.arguments.count > 1 ? Int32(CommandLine.arguments[1])! : 500
let options = PoolOptions(taskTimeout: .seconds(2))
var decoded = 0
var failures: [(id: Int32, error: any Error)] = []
try await withProcessPool(options: options) { pool in
    for try await (index, result) in pool.map(DecodeRecord.self, 0..<count).indexedResults {
        switch result {
        case .success: decoded += 1
        case .failure(let error): failures.append((Int32(index), error))
        }
    }
}
print("\(decoded) records decoded, \(failures.count) failed:")
for (id, error) in failures { print("  record \(id): \(error)") }
