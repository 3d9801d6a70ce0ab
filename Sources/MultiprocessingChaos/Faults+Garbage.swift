#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import Multiprocessing

/// Bytes that are not frames are written into a connection's pipe, then the
/// pipe is closed. Trial N mod 4: a long header claiming 1 TiB; a short one
/// claiming almost 4 GiB; random bytes; random bytes into a child's end. The
/// receiver must end with a typed error (never a crash, a hang, or the
/// claimed length allocated), and a child must return it normally.
let garbageFault = Fault(
    name: "garbage/connection",
    summary: "garbage and lying length headers written into a connection, in this process and in a child",
    deadline: .seconds(60)
) { index, _ in
    var random = SplitMix(seed: UInt64(index))
    let garbage: [UInt8]
    switch index % 4 {
    case 0: garbage = [0xFF, 0xFF, 0xFF, 0xFF] + withUnsafeBytes(of: (UInt64(1) << 40).littleEndian, Array.init)
    case 1: garbage = withUnsafeBytes(of: UInt32(0xFFFF_FFF0).littleEndian, Array.init) + [1, 2, 3]
    default: garbage = (0..<(16 + Int(random.next() % 4080))).map { _ in UInt8(truncatingIfNeeded: random.next()) }
    }
    let (reader, writer, writeFD) = try rawPipe()
    let heapBefore = heapInUse()
    let observed: Observed
    if index % 4 == 3 {
        let child = try ChildProcess(ReceiveGarbage(connection: reader), startMethod: .forkserver)
        try child.start()
        reader.close()
        try writeAll(garbage, to: writeFD)
        writer.close()
        try await child.join()
        defer { try? child.close() }
        guard child.terminationStatus == .exited(0) else {
            return .wrong("a child reading garbage ended \(child.terminationStatus!) (seed \(index))")
        }
        observed = try child.value
    } else {
        try writeAll(garbage, to: writeFD)
        writer.close()
        observed = ReceiveGarbage(connection: reader).run()
        reader.close()
    }
    let grown = heapInUse() - heapBefore
    let typed = [MultiprocessingError.Code.decodingFailed, .endOfStream, .messageTooLarge].map(\.description)
    guard let code = observed.code, typed.contains(code) else {
        return .wrong("garbage of \(garbage.count) bytes (seed \(index)) ended in \(observed)")
    }
    guard grown < 64 << 20 else {
        return .wrong("garbage of \(garbage.count) bytes (seed \(index)) grew the heap by \(bytesText(grown))")
    }
    return .correct
}

/// A one-way connection and the raw descriptor of its writing end, found
/// among the descriptors the connection opened.
func rawPipe() throws -> (reader: Connection, writer: Connection, writeFD: Int32) {
    let before = Set(entries(of: "/proc/self/fd"))
    let (reader, writer) = try Connection.pipe(duplex: false)
    let opened = Set(entries(of: "/proc/self/fd")).subtracting(before).compactMap { Int32($0) }
    guard let fd = opened.first(where: { fcntl($0, F_GETFL) & O_ACCMODE == O_WRONLY }) else {
        throw MultiprocessingError(.invalidArgument, "no write-only descriptor among \(opened) opened by the pipe")
    }
    return (reader, writer, fd)
}

func writeAll(_ bytes: [UInt8], to fd: Int32) throws {
    var offset = 0
    while offset < bytes.count {
        let count = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
        if count < 0 {
            if errno == EINTR { continue }
            throw MultiprocessingError(.systemCall, "write of garbage", errno: errno)
        }
        offset += count
    }
}

/// A small seeded generator, so a wrong trial can be replayed by its index.
struct SplitMix {
    var state: UInt64
    init(seed: UInt64) { state = seed &+ 0x9E37_79B9_7F4A_7C15 }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
