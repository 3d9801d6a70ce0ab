#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import Multiprocessing

func now() -> ContinuousClock.Instant { .now }

let scale = getenv("BENCH_SCALE").flatMap { Double(String(cString: $0)) } ?? 1.0
func reps(_ count: Int) -> Int { max(3, Int(Double(count) * scale)) }

extension Duration {
    var milliseconds: Double { Double(components.seconds) * 1e3 + Double(components.attoseconds) * 1e-15 }
    var microseconds: Double { milliseconds * 1e3 }
    var seconds: Double { milliseconds / 1e3 }
}

// MARK: W1: starting a process

struct Noop: ProcessTask {
    func run() {}
}

func processStarts(_ report: inout Report) throws {
    for (name, method, count) in [
        ("spawn", StartMethod.spawn, 30), ("forkserver", .forkserver, 50), ("fork", .fork, 100),
    ] where selected("W1.process.\(name)") {
        var samples: [Double] = []
        var first = 0.0
        for index in 0..<(reps(count) + 1) {
            let start = now()
            let child = try ChildProcess(Noop(), startMethod: method)
            try child.start()
            try child.join()
            let elapsed = (now() - start).milliseconds
            precondition(child.terminationStatus == .exited(0))
            try child.close()
            if index == 0 { first = elapsed } else { samples.append(elapsed) }
        }
        report.add(
            Measurement(
                name: "W1.process.\(name)", unit: "ms", better: "lower", samples: samples,
                note:
                    "ChildProcess(noop).start()+join(); first (cold\(method == .forkserver ? ", starts the server" : "")) \(format(first)) ms"
            ))
    }
}

/// fork()+_exit(0)+waitpid() from this harness, without the library: the
/// floor W1.process.fork stands on in a dynamically linked Swift process,
/// beside C.fork.exit_wait's static C program.
func rawForkFloor(_ report: inout Report) {
    guard selected("X.process.fork.raw") else { return }
    var samples: [Double] = []
    for _ in 0..<reps(100) {
        let start = now()
        let pid = fork()
        if pid == 0 { _exit(0) }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        samples.append((now() - start).milliseconds)
    }
    report.add(
        Measurement(
            name: "X.process.fork.raw", unit: "ms", better: "lower", samples: samples,
            note: "fork()+_exit(0)+waitpid() in this harness, no library code: the floor under W1.process.fork"))
}

// MARK: W4: small messages over a connection

struct EchoBytes: ProcessTask {
    var connection: Connection
    func run() throws {
        var buffer = [UInt8](repeating: 0, count: 64)
        while true {
            let count: Int
            do { count = try buffer.withUnsafeMutableBytes { try connection.receiveBytes(into: $0) } } catch { return }
            try buffer.withUnsafeBytes { try connection.sendBytes(UnsafeRawBufferPointer(rebasing: $0[..<count])) }
        }
    }
}

struct EchoInts: ProcessTask {
    var connection: Connection
    func run() throws {
        while true {
            let value: Int
            do { value = try connection.receive(Int.self) } catch { return }
            try connection.send(value)
        }
    }
}

/// Waits for "go", then streams `count` messages of 8 bytes.
struct StreamBytes: ProcessTask {
    var data: Connection
    var control: Connection
    var count: Int
    var size: Int
    var chunk: Int
    var batched = false

    func run() throws {
        let payload = [UInt8](repeating: 7, count: size)
        try data.sendBytes([1])
        while true {
            let message: [UInt8]
            do { message = try control.receiveBytes() } catch { return }
            if message.isEmpty { return }
            try payload.withUnsafeBytes { bytes in
                var offset = 0
                while offset < bytes.count {
                    let end = min(offset + chunk, bytes.count)
                    try data.sendBytes(UnsafeRawBufferPointer(rebasing: bytes[offset..<end]))
                    offset = end
                }
            }
            if batched {
                try data.withBatch { batch in
                    for _ in 0..<count { try payload.withUnsafeBytes { try batch.sendBytes($0) } }
                }
            } else {
                for _ in 0..<count { try payload.withUnsafeBytes { try data.sendBytes($0) } }
            }
        }
    }
}

func pipeMessages(_ report: inout Report) throws {
    let roundTrips = 20_000
    if selected("W4.pipe.pingpong.bytes8") {
        let (mine, theirs) = try Connection.pipe()
        let child = try ChildProcess(EchoBytes(connection: theirs))
        try child.start()
        theirs.close()
        var samples: [Double] = []
        var message = [UInt8](repeating: 1, count: 8)
        for _ in 0..<reps(7) {
            let start = now()
            for _ in 0..<roundTrips {
                try mine.sendBytes(message)
                _ = try message.withUnsafeMutableBytes { try mine.receiveBytes(into: $0) }
            }
            samples.append((now() - start).microseconds / Double(roundTrips))
        }
        mine.close()
        try child.join()
        report.add(
            Measurement(
                name: "W4.pipe.pingpong.bytes8", unit: "us/rtt", better: "lower", samples: samples,
                note:
                    "duplex Connection (two pipes), sendBytes/receiveBytes(into:) of 8 B, \(roundTrips) round trips per rep"
            ))
    }
    if selected("W4.pipe.pingpong.obj") {
        let (mine, theirs) = try Connection.pipe()
        let child = try ChildProcess(EchoInts(connection: theirs))
        try child.start()
        theirs.close()
        var samples: [Double] = []
        for _ in 0..<reps(7) {
            let start = now()
            for value in 0..<roundTrips {
                try mine.send(value)
                let echoed = try mine.receive(Int.self)
                precondition(echoed == value)
            }
            samples.append((now() - start).microseconds / Double(roundTrips))
        }
        mine.close()
        try child.join()
        report.add(
            Measurement(
                name: "W4.pipe.pingpong.obj", unit: "us/rtt", better: "lower", samples: samples,
                note: "duplex Connection, send/receive of an Int as a Codable value, \(roundTrips) round trips per rep")
        )
    }
    let messages = 200_000
    for batched in [true, false] {
        let name = batched ? "W4.pipe.oneway.bytes8" : "X.pipe.oneway.bytes8.unbatched"
        guard selected(name) else { continue }
        let samples = try stream(count: messages, size: 8, chunk: 8, reps: reps(5), batched: batched) { connection in
            var buffer = [UInt8](repeating: 0, count: 64)
            for _ in 0..<messages { _ = try buffer.withUnsafeMutableBytes { try connection.receiveBytes(into: $0) } }
        }.map { Double(messages) / $0.seconds }
        report.add(
            Measurement(
                name: name, unit: "msgs/s", better: "higher", samples: samples,
                note: "one-way Connection, child sends \(messages) x 8 B "
                    + (batched ? "inside connection.withBatch {}" : "with one sendBytes call (one write) each")
                    + ", parent receiveBytes(into:) each; start-up excluded (ready/go)"))
    }
}

/// Starts a streaming child once, then times `reps` rounds of go -> everything received.
func stream(
    count: Int, size: Int, chunk: Int, reps: Int, batched: Bool = false, receive: (Connection) throws -> Void
) throws -> [Duration] {
    let (data, dataEnd) = try Connection.pipe(duplex: false)
    let (controlEnd, control) = try Connection.pipe(duplex: false)
    let child = try ChildProcess(
        StreamBytes(data: dataEnd, control: controlEnd, count: count, size: size, chunk: chunk, batched: batched))
    try child.start()
    dataEnd.close()
    controlEnd.close()
    _ = try data.receiveBytes()
    var samples: [Duration] = []
    for _ in 0..<reps {
        let start = now()
        try control.sendBytes([1])
        try receive(data)
        samples.append(now() - start)
    }
    try control.sendBytes([])
    control.close()
    try child.join()
    return samples
}

// MARK: W5: bulk data over a connection

func pipeBulk(_ report: inout Report) throws {
    guard selected("W5.pipe") else { return }
    let mib = 1 << 20
    let total = 256 * mib
    let single = try stream(count: 0, size: total, chunk: total, reps: reps(5)) { connection in
        let message = try connection.receiveBytes()
        precondition(message.count == total)
    }.map { Double(total) / 1e9 / $0.seconds }
    report.add(
        Measurement(
            name: "W5.pipe.single", unit: "GB/s", better: "higher", samples: single,
            note: "256 MiB child -> parent as one message (receiveBytes), default pipe size"))

    var buffer = [UInt8](repeating: 0, count: mib)
    let chunks = try stream(count: 0, size: total, chunk: mib, reps: reps(5)) { connection in
        try buffer.withUnsafeMutableBytes { bytes in
            for _ in 0..<256 {
                let count = try connection.receiveBytes(into: bytes)
                precondition(count == mib)
            }
        }
    }.map { Double(total) / 1e9 / $0.seconds }
    report.add(
        Measurement(
            name: "W5.pipe.chunks1M", unit: "GB/s", better: "higher", samples: chunks,
            note: "256 MiB child -> parent as 256 messages of 1 MiB (receiveBytes(into:) one reused buffer)"))
}
