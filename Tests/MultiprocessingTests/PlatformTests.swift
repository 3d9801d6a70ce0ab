#if canImport(Glibc)
    import Glibc
#endif
import Testing

@testable import Multiprocessing

@Suite("The system-call layer: its EINTR policy and its errors", .serialized)
struct PlatformTests {
    @Test("a call interrupted by a signal (EINTR) is made again; its result is the first that succeeds")
    func interruptedCallsAreRetried() throws {
        var calls = 0
        let result = try Platform.retrying("test") { () -> Int32 in
            calls += 1
            if calls < 4 {
                errno = EINTR
                return -1
            }
            return 7
        }
        #expect(result == 7)
        #expect(calls == 4)
    }

    @Test("any other failure is thrown once, with the call's name and its errno")
    func otherFailuresAreThrown() {
        var calls = 0
        let error = #expect(throws: MultiprocessingError.self) {
            try Platform.retrying("open of a test file") { () -> Int32 in
                calls += 1
                errno = ENOENT
                return -1
            }
        }
        #expect(calls == 1)
        #expect(error?.code == .systemCall)
        #expect(error?.errno == ENOENT)
        #expect(error?.message.contains("open of a test file") == true)
    }

    @Test("a real call: a read interrupted by a signal handler is made again and gets the data")
    func realReadInterruptedBySignal() throws {
        let pipe = try Platform.makePipe()
        defer {
            Platform.close(pipe.read)
            Platform.close(pipe.write)
        }
        // A handler without SA_RESTART: the blocked read returns EINTR.
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }
        action.sa_flags = 0
        var previous = sigaction()
        sigaction(SIGUSR2, &action, &previous)
        defer { sigaction(SIGUSR2, &previous, nil) }
        // This thread may have inherited a mask that blocks SIGUSR2.
        var unblock = sigset_t()
        sigemptyset(&unblock)
        sigaddset(&unblock, SIGUSR2)
        var mask = sigset_t()
        pthread_sigmask(SIG_UNBLOCK, &unblock, &mask)
        defer { pthread_sigmask(SIG_SETMASK, &mask, nil) }
        let reader = pthread_self()
        var interruptions = 0
        let writer = TestThread {
            usleep(50_000)
            pthread_kill(reader, SIGUSR2)
            usleep(50_000)
            var byte: UInt8 = 42
            _ = write(pipe.write, &byte, 1)
        }
        writer.start()
        var byte: UInt8 = 0
        let count = try Platform.retrying("read") { () -> Int in
            let result = read(pipe.read, &byte, 1)
            if result < 0 && errno == EINTR { interruptions += 1 }
            return result
        }
        writer.join()
        #expect(count == 1)
        #expect(byte == 42)
        #expect(interruptions == 1)
    }

    @Test("a copy of a descriptor that is not open throws EBADF instead of trapping: it may be the caller's")
    func duplicateOfAClosedDescriptorThrows() throws {
        // Above any descriptor limit: never open, and not reused by another test meanwhile.
        let closed: Int32 = 1 << 24
        let error = #expect(throws: MultiprocessingError.self) { _ = try Platform.duplicate(closed, of: "a test pipe") }
        #expect(error?.errno == EBADF)
        #expect(error?.message.contains("a test pipe") == true)
        #expect(!Platform.isOpen(closed))
    }

    @Test("waiting for a process that is not a child throws ECHILD; this process exists, a freed pid does not")
    func reapAndExistence() throws {
        let error = #expect(throws: MultiprocessingError.self) { _ = try Platform.reap(getpid()) }
        #expect(error?.errno == ECHILD)
        #expect(Platform.exists(getpid()))
        // The largest pid the kernel hands out, plus one: never a process.
        let maximum = Platform.readSmallFile("/proc/sys/kernel/pid_max").flatMap { $0.split(separator: "\n").first }.flatMap { Int32($0) }
        if let maximum { #expect(!Platform.exists(maximum + 1)) }
    }
}

/// A thread to run a closure on, joined by the test.
private final class TestThread: @unchecked Sendable {
    private var thread = pthread_t()
    private let body: () -> Void

    init(_ body: @escaping () -> Void) { self.body = body }

    func start() {
        let box = Unmanaged.passRetained(self)
        pthread_create(
            &thread, nil,
            { raw in
                let me = Unmanaged<TestThread>.fromOpaque(raw!).takeRetainedValue()
                me.body()
                return nil
            }, box.toOpaque())
    }

    func join() { pthread_join(thread, nil) }
}
