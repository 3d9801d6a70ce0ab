#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import Multiprocessing

enum SquareFunction: ProcessFunction {
    static func call(_ input: Int) -> Int { input * input }
}

struct SquareTask: ProcessTask {
    var number: Int
    func run() -> Int { number * number }
}

/// Counts the primes below `input` by trial division (W6).
enum CountPrimes: ProcessFunction {
    static func call(_ input: Int) -> Int {
        var count = 0
        var candidate = 2
        while candidate < input {
            var divisor = 2
            var prime = true
            while divisor * divisor <= candidate {
                if candidate % divisor == 0 {
                    prime = false
                    break
                }
                divisor += 1
            }
            if prime { count += 1 }
            candidate += 1
        }
        return count
    }
}

/// Runs async work from the synchronous harness and waits for it.
func blockOn<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) throws -> T {
    let box = ResultBox<T>()
    Task.detached {
        do { box.put(.success(try await body())) } catch { box.put(.failure(error)) }
    }
    return try box.take().get()
}

final class ResultBox<T: Sendable>: @unchecked Sendable {
    // @unchecked: `value` is guarded by `mutex`.
    private var mutex = pthread_mutex_t()
    private var ready = pthread_cond_t()
    private var value: Result<T, any Error>?

    init() {
        pthread_mutex_init(&mutex, nil)
        pthread_cond_init(&ready, nil)
    }

    func put(_ result: Result<T, any Error>) {
        pthread_mutex_lock(&mutex)
        value = result
        pthread_cond_signal(&ready)
        pthread_mutex_unlock(&mutex)
    }

    func take() -> Result<T, any Error> {
        pthread_mutex_lock(&mutex)
        while value == nil { pthread_cond_wait(&ready, &mutex) }
        defer { pthread_mutex_unlock(&mutex) }
        return value!
    }
}

/// This process's resident memory now, in MiB, from /proc/self/statm.
func residentMiB() -> Double {
    let fields = firstLine(ofFile: "/proc/self/statm", startingWith: "")?.split(separator: " ") ?? []
    guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
    return Double(pages * Int(sysconf(Int32(_SC_PAGESIZE)))) / 1_048_576
}

/// The threads of this process, from /proc/self/task.
func threadCount() -> Int {
    guard let directory = opendir("/proc/self/task") else { return 0 }
    defer { closedir(directory) }
    var count = 0
    while let entry = readdir(directory) {
        if entry.pointee.d_name.0 != 46 { count += 1 }
    }
    return count
}

func poolWorkloads(_ report: inout Report) throws {
    // First, while the harness is still single-threaded: a forking pool forks the harness itself.
    if selected("W7.pool.fork") {
        var samples: [Double] = []
        for _ in 0..<reps(10) {
            // The previous pool's engine thread has been told to end; let it finish exiting.
            while threadCount() > 1 { usleep(100) }
            let start = now()
            let pool = try ForkingPool(workers: 2) { (input: Int) in input * input }
            let square = try pool.submit(3).get()
            precondition(square == 9)
            samples.append((now() - start).milliseconds)
            pool.close()
            pool.join()
        }
        report.add(
            Measurement(
                name: "W7.pool.fork", unit: "ms", better: "lower", samples: samples,
                note:
                    "ForkingPool(workers: 2) { square } created (forks the zygote), then the first submit(3).get() returned"
            ))
    }
    let items = 200_000
    let pool = try ProcessPool(workers: 2)
    _ = try pool.submit(SquareTask(number: 1)).get()
    for (name, chunkSize, ordered, repetitions) in [
        ("W2.pool.map.default", nil, true, 7), ("W2.pool.map.cs1", 1, true, 3),
        ("W2.pool.imap_unordered.cs1000", 1000, false, 7),
    ] as [(String, Int?, Bool, Int)] where selected(name) {
        var samples: [Double] = []
        for _ in 0..<reps(repetitions) {
            let start = now()
            let count = try blockOn {
                // Python's map returns a list; its imap_unordered is iterated.
                if ordered {
                    return try await pool.map(SquareFunction.self, 0..<items, chunkSize: chunkSize).collect().count
                }
                var count = 0
                for try await _ in pool.mapUnordered(SquareFunction.self, 0..<items, chunkSize: chunkSize) {
                    count += 1
                }
                return count
            }
            precondition(count == items)
            samples.append(Double(items) / (now() - start).seconds)
        }
        report.add(
            Measurement(
                name: name, unit: "tasks/s", better: "higher", samples: samples,
                note:
                    "warm ProcessPool(workers: 2), \(ordered ? "map(...).collect()" : "for-await over mapUnordered") of a square ProcessFunction "
                    + "over 0..<\(items), chunkSize \(chunkSize.map(String.init) ?? "automatic (count / (4 x workers))")"
            ))
    }
    if selected("W3.pool.apply") {
        let calls = 5000
        var samples: [Double] = []
        for _ in 0..<reps(5) {
            let start = now()
            for number in 0..<calls {
                let value = try pool.submit(SquareTask(number: number)).get()
                precondition(value == number * number)
            }
            samples.append((now() - start).microseconds / Double(calls))
        }
        report.add(
            Measurement(
                name: "W3.pool.apply", unit: "us/call", better: "lower", samples: samples,
                note: "\(calls) sequential pool.submit(SquareTask).get() round trips, warm 2-worker pool"))
    }
    if selected("W6.primes") {
        let limit = 300_000
        let inputs = Array(repeating: limit, count: 16)
        var serial: [Double] = []
        var parallel: [Double] = []
        var speedups: [Double] = []
        for _ in 0..<reps(5) {
            let serialStart = now()
            let expected = inputs.map { CountPrimes.call($0) }
            let serialTime = (now() - serialStart).seconds
            let poolStart = now()
            let counted = try blockOn { try await pool.map(CountPrimes.self, inputs, chunkSize: 1).collect() }
            let poolTime = (now() - poolStart).seconds
            precondition(counted == expected)
            serial.append(serialTime)
            parallel.append(poolTime)
            speedups.append(serialTime / poolTime)
        }
        let note =
            "16 x count_primes(\(limit)) by trial division; serial in the parent vs a warm 2-worker pool, "
            + "chunkSize 1, timed as interleaved pairs"
        report.add(Measurement(name: "W6.primes.serial", unit: "s", better: "lower", samples: serial, note: note))
        report.add(Measurement(name: "W6.primes.pool2", unit: "s", better: "lower", samples: parallel, note: note))
        report.add(Measurement(name: "W6.primes.speedup", unit: "x", better: "higher", samples: speedups, note: note))
        report.params.append(("W6.limit", "\(limit)"))
    }
    if selected("X.pool.map10M") {
        let items = 10_000_000
        let before = residentMiB()
        let start = now()
        let peak = try blockOn {
            var peak = residentMiB()
            var count = 0
            for try await _ in pool.map(SquareFunction.self, 0..<items) {
                count += 1
                if count % 100_000 == 0 { peak = max(peak, residentMiB()) }
            }
            precondition(count == items)
            return peak
        }
        let seconds = (now() - start).seconds
        report.add(
            Measurement(
                name: "X.pool.map10M.peak_rss", unit: "MiB", better: "lower", samples: [peak],
                note: "largest resident set of the harness, sampled every 100,000 results of a for-await over "
                    + "pool.map(square, 0..<10_000_000) on 2 workers (\(format(Double(items) / seconds)) items/s); "
                    + "\(format(before)) MiB before the map"))
    }
    pool.close()
    pool.join()
    for (name, method) in [("spawn", StartMethod.spawn), ("forkserver", StartMethod.forkserver)]
    where selected("W7.pool.\(name)") {
        var samples: [Double] = []
        for _ in 0..<reps(10) {
            let start = now()
            let fresh = try ProcessPool(workers: 2, options: PoolOptions(startMethod: method))
            _ = try fresh.submit(SquareTask(number: 3)).get()
            samples.append((now() - start).milliseconds)
            fresh.close()
            fresh.join()
        }
        report.add(
            Measurement(
                name: "W7.pool.\(name)", unit: "ms", better: "lower", samples: samples,
                note: "ProcessPool(workers: 2, \(name)) created, then the first submit(...).get() returned"))
    }
}
