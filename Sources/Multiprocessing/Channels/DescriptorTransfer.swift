#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import CMultiprocessing

extension CodingUserInfoKey {
    /// Where objects that own descriptors (connections, later queues and
    /// shared memory) put them while a child's task value is encoded, and find
    /// them again when it is decoded in the child.
    static let descriptorTransfer = CodingUserInfoKey(rawValue: "swift-multiprocessing.descriptors")!
}

/// The descriptors that travel beside one encoded task value.
///
/// In the parent, encoding adds descriptors and records their index in the
/// value; the launcher hands them to the child in that order. In the child,
/// decoding takes the descriptor at each recorded index.
final class DescriptorTransfer: @unchecked Sendable {
    // @unchecked: one encoder or decoder uses an instance at a time, on one thread.
    private(set) var descriptors: [Int32]
    private var taken: Set<Int> = []

    init(descriptors: [Int32] = []) {
        self.descriptors = descriptors
    }

    func add(_ fd: Int32) -> Int {
        if let index = descriptors.firstIndex(of: fd) { return index }
        descriptors.append(fd)
        return descriptors.count - 1
    }

    /// Closes the descriptors that decoding did not take (a value that
    /// failed to decode, or one that held fewer objects than were sent).
    func closeUntaken() {
        for (index, fd) in descriptors.enumerated() where !taken.contains(index) { Platform.close(fd) }
        taken = Set(descriptors.indices)
    }

    /// The descriptor at `index`, made close-on-exec; -1 stays -1. An index
    /// taken before (several objects of one value share a segment, a queue)
    /// gives a copy, since each object owns and closes its descriptor.
    func take(_ index: Int) throws -> Int32 {
        if index == -1 { return -1 }
        guard descriptors.indices.contains(index) else {
            throw MultiprocessingError(
                .decodingFailed, "the task value names descriptor #\(index), which was not passed")
        }
        let fd = descriptors[index]
        guard taken.insert(index).inserted else {
            return try Platform.duplicate(fd, of: "a descriptor shared by several objects")
        }
        Platform.setCloseOnExec(fd)
        return fd
    }
}
