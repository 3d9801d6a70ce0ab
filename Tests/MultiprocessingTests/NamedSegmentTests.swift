#if canImport(Glibc)
    import Glibc
#endif
import Testing
@testable import Multiprocessing

extension ProcessSuites {
    @Suite("Named shared memory: names, removal, creators that die", .serialized, .timeLimit(.minutes(2)))
    struct NamedSegmentTests {
        static func uniqueName(_ label: String) -> String { "swift-mp-test-\(getpid())-\(label)-\(UInt32.random(in: 0...UInt32.max))" }

        /// Starts a child that creates `name`, waits until it has, and kills it with SIGKILL.
        func createAndKill(_ name: String, persistent: Bool) throws {
            let (ready, childReady) = try Connection.pipe()
            let child = try ChildProcess(
                CreateNamedSegmentAndWait(name: name, persistent: persistent, ready: childReady), startMethod: .spawn)
            try child.start()
            childReady.close()
            #expect(try ready.receive(String.self) == "created")
            #expect(directoryEntries("/dev/shm").contains(name))
            #expect(directoryEntries("/dev/shm").contains(SegmentCreators.prefix + name) == !persistent)
            try child.kill()
            try child.join()
            #expect(child.terminationStatus == .signaled(.kill))
        }

        @Test("a segment whose creator was SIGKILLed is removed at the next open or create in any process")
        func killedCreatorsSegmentIsRemoved() throws {
            let name = Self.uniqueName("killed")
            try createAndKill(name, persistent: false)
            // Nothing removed it yet: the creator died without a word.
            #expect(directoryEntries("/dev/shm").contains(name))
            let gone = #expect(throws: MultiprocessingError.self) { _ = try SharedMemory.open(named: name) }
            #expect(gone?.errno == ENOENT)
            #expect(!directoryEntries("/dev/shm").contains(name))
            #expect(!directoryEntries("/dev/shm").contains(SegmentCreators.prefix + name))

            let second = Self.uniqueName("killed-then-create")
            try createAndKill(second, persistent: false)
            let other = try SharedMemory.create(named: Self.uniqueName("unrelated"), size: 1)
            #expect(!directoryEntries("/dev/shm").contains(second))
            try other.unlink()
        }

        @Test("a persistent segment outlives its killed creator, and a live creator's segment is left alone")
        func persistentAndLiveSegmentsStay() throws {
            let name = Self.uniqueName("persistent")
            try createAndKill(name, persistent: true)
            let live = try SharedMemory.create(named: Self.uniqueName("live"), size: 8)
            let reopened = try SharedMemory.open(named: name)
            #expect(reopened.bytes.load(as: UInt8.self) == 7)
            #expect(try SharedMemory.open(named: live.name!).size == 8)
            #expect(directoryEntries("/dev/shm").contains(live.name!))
            shm_unlink("/" + name)
        }

        @Test("names with a NUL, a slash, '.' or '..', empty or too long, are refused with .invalidArgument")
        func invalidNames() throws {
            let prefix = Self.uniqueName("nul")
            let prefixSegment = try SharedMemory.create(named: prefix, size: 1)
            for bad in [prefix + "\0suffix", "", "a/b", ".", "..", String(repeating: "n", count: 250)] {
                let create = #expect(throws: MultiprocessingError.self) { _ = try SharedMemory.create(named: bad, size: 1) }
                #expect(create?.code == .invalidArgument)
                // Never the segment named by the part before the NUL.
                let open = #expect(throws: MultiprocessingError.self) { _ = try SharedMemory.open(named: bad) }
                #expect(open?.code == .invalidArgument)
            }
            let error = #expect(throws: MultiprocessingError.self) {
                _ = try SharedMemory.create(named: prefix + "\0suffix", size: 1)
            }
            #expect(error?.message.contains("\\0suffix") == true)
            let long = String(repeating: "l", count: 245) + "\(getpid())".prefix(4)
            let tooLong = #expect(throws: MultiprocessingError.self) { _ = try SharedMemory.create(named: long, size: 1) }
            #expect(tooLong?.message.contains("persistent") == true)
            let persistentLong = try SharedMemory.create(named: long, size: 1, persistent: true)
            try persistentLong.unlink()
            try prefixSegment.unlink()
        }

        @Test("a second unlink, and an unlink by a process that only opened the segment, say so")
        func secondUnlink() throws {
            let owner = try SharedMemory.create(named: Self.uniqueName("twice"), size: 1)
            let opened = try SharedMemory.open(named: owner.name!)
            let notOwner = #expect(throws: MultiprocessingError.self) { try opened.unlink() }
            #expect(notOwner?.code == .invalidArgument)
            #expect(notOwner?.message.contains("opened, not created") == true)
            try owner.unlink()
            #expect(!directoryEntries("/dev/shm").contains(owner.name!))
            #expect(!directoryEntries("/dev/shm").contains(SegmentCreators.prefix + owner.name!))
            let again = #expect(throws: MultiprocessingError.self) { try owner.unlink() }
            #expect(again?.code == .invalidArgument)
            #expect(again?.message.contains("already removed") == true)
        }
    }
}
