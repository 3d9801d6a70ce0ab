#if canImport(Glibc)
    import Glibc
#endif
import Testing
@testable import Multiprocessing

extension ProcessSuites {
    @Suite("Shared memory and locks", .serialized, .timeLimit(.minutes(2)))
    struct SharedMemoryTests {
        @Test(
            "a locked shared counter incremented by 4 children of every task start method",
            arguments: [StartMethod.spawn, .forkserver])
        func sharedCounter(method: StartMethod) throws {
            let counter = try SharedValue(0)
            let children = try (0..<4).map { _ in
                try ChildProcess(IncrementShared(counter: counter, times: 500), startMethod: method)
            }
            for child in children { try child.start() }
            for child in children {
                try child.join()
                #expect(child.exitCode == 0)
            }
            #expect(counter.value == 2000)
        }

        @Test("a lock holder killed with SIGKILL lets the next locker recover")
        func lockSurvivesKilledHolder() throws {
            let lock = try ProcessLock()
            let (mine, theirs) = try Connection.pipe()
            let holder = try ChildProcess(HoldLockAndDie(lock: lock, ready: theirs))
            try holder.start()
            theirs.close()
            _ = try mine.receive(Int.self)
            try holder.join()
            #expect(holder.terminationStatus == .signaled(.kill))
            #expect(try lock.lock() == .previousOwnerDied)
            try lock.unlock()
            #expect(try lock.lock() == .acquired)
            try lock.unlock()
        }

        @Test("lock with a timeout gives up while another process holds the lock")
        func lockTimeout() throws {
            let lock = try ProcessLock()
            try lock.lock()
            let waiter = try ChildProcess(TryLockFor(lock: lock, milliseconds: 100))
            try waiter.start()
            try waiter.join()
            #expect(try waiter.value == false)
            try lock.unlock()
            let second = try ChildProcess(TryLockFor(lock: lock, milliseconds: 1000))
            try second.start()
            try second.join()
            #expect(try second.value == true)
        }

        @Test("a shared array is written in place by a child; raw segments reach children")
        func sharedArrayAndSegment() throws {
            let array = try SharedArray<Double>([1, 2, 3, 4])
            let child = try ChildProcess(DoubleArray(array: array))
            try child.start()
            try child.join()
            #expect((0..<4).map { array[$0] } == [2, 4, 6, 8])

            let memory = try SharedMemory(size: 4096)
            memory.bytes.copyBytes(from: [9, 8, 7, 6])
            let reader = try ChildProcess(ReadSharedBytes(memory: memory), startMethod: .forkserver)
            try reader.start()
            try reader.join()
            #expect(try reader.value == [9, 8, 7, 6])
        }

        @Test("1000 shared-memory create-and-release cycles leave nothing in /dev/shm and no descriptor")
        func noLeaks() throws {
            let shmBefore = directoryEntries("/dev/shm")
            let descriptorsBefore = openDescriptors()
            for index in 0..<1000 {
                let memory = try SharedMemory(size: 1 << 16)
                memory.bytes[index % (1 << 16)] = 1
                let value = try SharedValue(index)
                #expect(value.value == index)
            }
            #expect(openDescriptors() == descriptorsBefore)
            #expect(directoryEntries("/dev/shm") == shmBefore)
        }

        @Test(
            "a pool hands a released segment out again, zeroed, after its child let go",
            arguments: [StartMethod.spawn, .forkserver])
        func poolReusesReleasedSegments(method: StartMethod) throws {
            let pool = SharedMemoryPool()
            let size = 1 << 20
            var first: UnsafeMutableRawPointer?
            do {
                let memory = try pool.segment(size: size)
                first = memory.baseAddress
                let child = try ChildProcess(FillSegment(memory: memory, byte: 7), startMethod: method)
                try child.start()
                try child.join()
                #expect(child.exitCode == 0)
                #expect(memory.bytes.allSatisfy { $0 == 7 })
            }
            #expect(pool.retainedBytes > size)
            let again = try pool.segment(size: size)
            #expect(again.baseAddress == first)
            #expect(again.bytes.allSatisfy { $0 == 0 })
            #expect(pool.retainedBytes == 0)
        }

        @Test("a segment another process still maps, or died mapping, is never handed out again")
        func poolNeverReusesAttachedSegments() throws {
            let pool = SharedMemoryPool()
            let size = 1 << 16
            // A child that holds the segment past the parent's release, then writes to it.
            let (holder, control) = try startHolder(of: pool, size: size, byte: 5, startMethod: .forkserver)
            let fresh = try expectNotHandedOut(by: pool, size: size, whileHeldBy: holder, control)

            // A child killed while it maps the segment: the count stays, the segment is freed.
            let (victim, victimControl) = try startHolder(of: pool, size: size, byte: 6, startMethod: .forkserver)
            try withExtendedLifetime(victimControl) {  // the victim must still be waiting when it is killed
                try victim.kill()
                try victim.join()
            }
            #expect(victim.terminationStatus == .signaled(.kill))
            #expect(pool.retainedBytes == 0)

            // A forked child inherits the mapping: counted before the fork.
            let (forked, forkedControl) = try startHolder(
                of: pool, size: size, byte: 4, startMethod: .fork(allowingOtherThreads: true))
            let another = try expectNotHandedOut(by: pool, size: size, whileHeldBy: forked, forkedControl)
            withExtendedLifetime((fresh, another)) {}  // neither goes back to the pool before the checks
        }

        /// With `holder` still mapping its segment: the pool keeps nothing to
        /// hand out, and the segment it makes instead is not reached by the
        /// holder's write. Returns that segment, for the caller to keep.
        private func expectNotHandedOut(
            by pool: SharedMemoryPool, size: Int, whileHeldBy holder: ChildProcess<Void>, _ control: Connection
        ) throws -> SharedMemory {
            #expect(pool.retainedBytes == 0)
            let fresh = try pool.segment(size: size)
            try control.sendBytes([1])
            _ = try control.receiveBytes()
            try holder.join()
            #expect(fresh.bytes.allSatisfy { $0 == 0 })
            return fresh
        }

        /// Starts a child that maps a new segment of `pool` and waits, and
        /// drops this process's reference to the segment once the child is ready.
        private func startHolder(
            of pool: SharedMemoryPool, size: Int, byte: UInt8, startMethod: StartMethod
        ) throws -> (ChildProcess<Void>, Connection) {
            let (mine, theirs) = try Connection.pipe()
            let holder = try ChildProcess(
                HoldSegmentThenFill(memory: try pool.segment(size: size), control: theirs, byte: byte),
                startMethod: startMethod)
            try holder.start()
            // The parent keeps the child's end (in the task), so a child that dies first is no end of file.
            guard try mine.poll(timeout: .seconds(30)) else {
                throw MultiprocessingError(.timedOut, "the holder (\(startMethod)) never reported its mapping")
            }
            _ = try mine.receiveBytes()
            return (holder, mine)
        }

        @Test("1000 pooled segments through children leave no descriptor behind once the pool is gone")
        func poolLeavesNothing() throws {
            let descriptorsBefore = openDescriptors()
            do {
                let pool = SharedMemoryPool(maximumBytes: 4 << 20)
                for index in 0..<1000 {
                    let memory = try pool.segment(size: 1 << 12 + index % 3)
                    memory.bytes[0] = 1
                }
                let memory = try pool.segment(size: 1 << 16)
                let child = try ChildProcess(FillSegment(memory: memory, byte: 1))
                try child.start()
                try child.join()
                #expect(pool.retainedBytes <= 4 << 20)
            }
            #expect(openDescriptors() == descriptorsBefore)
        }

        @Test("async code takes the locks without blocking the cooperative pool")
        func asyncLocks() async throws {
            let counter = try SharedValue(0)
            let child = try ChildProcess(IncrementShared(counter: counter, times: 300))
            try child.start()
            try await withThrowingTaskGroup(of: Void.self) { group in
                for _ in 0..<4 {
                    group.addTask { for _ in 0..<50 { try await counter.withLock { $0 += 1 } } }
                }
                try await group.waitForAll()
            }
            try await child.join()
            #expect(counter.value == 500)
            let lock = try ProcessLock()
            #expect(try await lock.withLock { $0 } == .acquired)
        }

        @Test("a named segment is opened by name in another process and removed by its owner")
        func namedSegment() throws {
            let name = "swift-multiprocessing-test-\(getpid())"
            do {
                let owner = try SharedMemory.create(named: name, size: 4096)
                owner.bytes.copyBytes(from: [1, 2, 3])
                #expect(directoryEntries("/dev/shm").contains(name))
                let reader = try ChildProcess(ReadNamedSegment(name: name))
                try reader.start()
                try reader.join()
                #expect(try reader.value == [1, 2, 3])
                let taken = #expect(throws: MultiprocessingError.self) {
                    _ = try SharedMemory.create(named: name, size: 1)
                }
                #expect(taken?.errno == EEXIST)
            }
            #expect(!directoryEntries("/dev/shm").contains(name))
            let gone = #expect(throws: MultiprocessingError.self) { _ = try SharedMemory.open(named: name) }
            #expect(gone?.errno == ENOENT)
            let bad = #expect(throws: MultiprocessingError.self) { _ = try SharedMemory.create(named: "a/b", size: 1) }
            #expect(bad?.code == .invalidArgument)
        }

        @Test("bad sizes are refused with a clear error")
        func badSizes() {
            let error = #expect(throws: MultiprocessingError.self) { _ = try SharedMemory(size: 0) }
            #expect(error?.code == .invalidArgument)
        }
    }
}

func directoryEntries(_ path: String) -> [String] {
    guard let directory = opendir(path) else { return [] }
    defer { closedir(directory) }
    var names: [String] = []
    while let entry = readdir(directory) {
        names.append(
            withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) })
    }
    return names.sorted()
}
