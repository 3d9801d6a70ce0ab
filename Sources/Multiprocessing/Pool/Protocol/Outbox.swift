#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// Bytes waiting to go down a worker's pipe, written without blocking as the
/// pipe takes them.
///
/// Small messages are gathered in one buffer; a large payload is queued as
/// the array it already is, not copied. Writing never moves what is left.
struct Outbox {
    /// Payloads from this size on are queued as they are rather than copied.
    static let largePayload = 16 << 10

    /// Full pieces, oldest first, then `tail`, where small bytes are gathered.
    private var pieces = FrontQueue<[UInt8]>()
    private var tail: [UInt8] = []
    /// Bytes already written of the first piece (or of `tail` when there are no pieces).
    private var written = 0

    var isEmpty: Bool { pieces.isEmpty && written == tail.count }

    /// Appends bytes written in place at the end of the gathering buffer.
    mutating func appendSmall(_ build: (inout [UInt8]) -> Void) {
        build(&tail)
    }

    /// Appends a payload: copied when small, queued by reference when large.
    mutating func append(payload: [UInt8]) {
        guard payload.count >= Self.largePayload else {
            tail += payload
            return
        }
        if !tail.isEmpty {
            pieces.append(tail)
            tail = []
        }
        pieces.append(payload)
    }

    /// Writes what the pipe takes now; drops everything when the reader is gone.
    mutating func flush(to fd: Int32) {
        while !isEmpty {
            let result = writeFront(to: fd)
            if result < 0 {
                if errno == EINTR { continue }
                if errno != EAGAIN { removeAll() }
                return
            }
            if result == 0 { return }
            consume(result)
        }
    }

    private mutating func removeAll() {
        pieces = FrontQueue()
        tail = []
        written = 0
    }

    /// One `write` of the front piece (or of the gathering buffer). Large
    /// pieces are each worth their own system call.
    private func writeFront(to fd: Int32) -> Int {
        (pieces.first ?? tail).withUnsafeBytes { bytes in
            write(fd, bytes.baseAddress! + written, bytes.count - written)
        }
    }

    /// Drops `count` bytes from the front.
    private mutating func consume(_ count: Int) {
        var count = count
        while count > 0, let first = pieces.first {
            let left = first.count - written
            if count < left {
                written += count
                return
            }
            count -= left
            pieces.removeFirst()
            written = 0
        }
        guard count > 0 else { return }
        written += count
        if written == tail.count {
            tail.removeAll(keepingCapacity: true)
            written = 0
        }
    }
}
