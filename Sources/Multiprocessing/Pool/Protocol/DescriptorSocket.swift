#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import CMultiprocessing

/// One end of the socket through which a pool hands a worker the
/// descriptors of a job's inputs (shared memory, queues, locks,
/// connections): one message per job, sent before the job's work message,
/// whose descriptor count tells the worker to read it. A pipe cannot carry
/// descriptors; the work itself stays on the faster pipe.
struct DescriptorSocket: Codable, Sendable {
    private final class Owner: Sendable {
        let fd: Int32
        init(_ fd: Int32) { self.fd = fd }
        deinit { Platform.close(fd) }
    }

    private let owner: Owner

    var fd: Int32 { owner.fd }

    private init(fd: Int32) { owner = Owner(fd) }

    /// A connected pair: the pool's end and the worker's.
    static func pair() throws -> (pool: DescriptorSocket, worker: DescriptorSocket) {
        let fds = try Platform.makeMessageSocketPair()
        return (DescriptorSocket(fd: fds[0]), DescriptorSocket(fd: fds[1]))
    }

    /// The most descriptors one message carries; more go in several.
    private static let batch = 32

    /// Sends `descriptors` (the receiver gets copies), waiting for room.
    func send(_ descriptors: [Int32]) throws {
        for start in stride(from: 0, to: descriptors.count, by: Self.batch) {
            var byte: UInt8 = 0
            let part = Array(descriptors[start..<min(start + Self.batch, descriptors.count)])
            let sent = part.withUnsafeBufferPointer {
                mp_send_with_fds(fd, &byte, 1, $0.baseAddress, Int32($0.count), 0)
            }
            if sent < 0 { throw Platform.error("sendmsg of a job's descriptors") }
        }
    }

    /// Receives a job's `count` descriptors.
    func receive(count: Int) throws -> [Int32] {
        var all: [Int32] = []
        while all.count < count {
            let expected = min(Self.batch, count - all.count)
            var byte: UInt8 = 0
            var fds = [Int32](repeating: -1, count: Self.batch)
            var received: Int32 = 0
            let result = fds.withUnsafeMutableBufferPointer {
                mp_recv_with_fds(fd, &byte, 1, $0.baseAddress, Int32($0.count), &received)
            }
            all += fds.prefix(Int(max(received, 0)))
            guard result > 0, received == expected else {
                for fd in all { Platform.close(fd) }
                if result < 0 { throw Platform.error("recvmsg of a job's descriptors") }
                throw MultiprocessingError(
                    .decodingFailed, "a job's descriptors did not arrive as its work message announced (\(count))")
            }
        }
        return all
    }

    func encode(to encoder: any Encoder) throws {
        guard let transfer = encoder.userInfo[.descriptorTransfer] as? DescriptorTransfer else {
            throw MultiprocessingError(.encodingFailed, "a descriptor socket travels only to a child process")
        }
        var container = encoder.singleValueContainer()
        try container.encode(transfer.add(fd))
    }

    init(from decoder: any Decoder) throws {
        guard let transfer = decoder.userInfo[.descriptorTransfer] as? DescriptorTransfer else {
            throw MultiprocessingError(.decodingFailed, "a descriptor socket is decoded only in a child process")
        }
        self.init(fd: try transfer.take(decoder.singleValueContainer().decode(Int.self)))
    }
}
