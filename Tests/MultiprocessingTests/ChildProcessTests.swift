#if canImport(Glibc)
    import Glibc
#endif
import Logging
import Testing
@testable import Multiprocessing

private struct PrivateTask: ProcessTask {
    func run() {}
}

extension ProcessSuites {
    @Suite("Child processes", .serialized, .timeLimit(.minutes(2)))
    struct ChildProcessTests {
        static let taskMethods: [StartMethod] = [.spawn, .forkserver]

        @Test("every start method runs a task and returns its result", arguments: taskMethods)
        func runsTask(method: StartMethod) async throws {
            let child = try ChildProcess(Square(number: 12), startMethod: method)
            try child.start()
            #expect(child.pid != nil)
            try await child.join()
            #expect(try child.value == 144)
            #expect(child.terminationStatus == .exited(0))
            #expect(child.exitCode == 0)
            #expect(!child.isAlive)
            try child.close()
        }

        @Test("a child with a logger says when it started, was signalled and ended, and how", arguments: taskMethods)
        func logging(method: StartMethod) async throws {
            let records = LogRecords()
            let logger = Logger(label: "test.child") { _ in records }
            let fine = try ChildProcess(Square(number: 3), startMethod: method)
            fine.logger = logger
            try fine.start()
            try await fine.join()
            let crashed = try ChildProcess(CrashInFunction(way: .nullDereference), startMethod: method)
            crashed.logger = logger
            try crashed.start()
            try await crashed.join()
            let stopped = try ChildProcess(SleepForever(), startMethod: method)
            stopped.logger = logger
            try stopped.start()
            try stopped.terminate()
            try await stopped.join()
            let silent = try ChildProcess(Square(number: 4), startMethod: method)
            try silent.start()
            try await silent.join()

            let seen = records.all
            let pids = [fine.pid, crashed.pid, stopped.pid].map { "\($0!)" }
            #expect(seen.filter { $0.message == "child process started" && $0.level == .debug }.count == 3)
            #expect(seen.contains { $0.level == .debug && $0.message == "child process exited" && "\($0.metadata["pid"]!)" == pids[0] })
            let crash = seen.first { $0.level == .warning && "\($0.metadata["pid"]!)" == pids[1] }
            #expect(crash?.message == "child process killed by SIGSEGV", "\(seen.map(\.message))")
            #expect(crash?.metadata["crash"].map { "\($0)".contains("SIGSEGV") } == true, "\(String(describing: crash))")
            #expect(seen.contains { $0.level == .info && $0.message == "sent SIGTERM to child process" && "\($0.metadata["pid"]!)" == pids[2] })
            #expect(seen.contains { $0.level == .warning && $0.message == "child process killed by SIGTERM" })
            #expect(!seen.contains { "\($0.metadata["pid"] ?? "")" == "\(silent.pid!)" })
        }

        @Test("a result of 4 MiB arrives whole from every start method")
        func largeResult() async throws {
            let count = 4 << 20
            for method in Self.taskMethods {
                let child = try ChildProcess(ManyBytes(count: count), startMethod: method)
                try child.start()
                // The child never waits for the parent to read its result.
                #expect(try await child.join(timeout: .seconds(30)))
                #expect(try child.value == (0..<count).map { UInt8($0 % 253) })
            }
            // The test runner has threads, so the forks happen in a spawned, single-threaded child.
            #expect(try await ChildProcess.run(ManyBytesFromForks(count: count), startMethod: .spawn))
        }

        @Test("the fork start method runs a closure that captures non-Codable state")
        func forkRunsClosure() async throws {
            // The test runner has threads, so the fork happens in a spawned, single-threaded child.
            let result = try await ChildProcess.run(ForkFromChild(number: 7), startMethod: .spawn)
            #expect(result == 70)
        }

        @Test("fork is refused while other threads run, with an error that names the alternatives")
        func forkRefusedWithThreads() throws {
            let child = try ChildProcess { 1 }
            let error = #expect(throws: MultiprocessingError.self) { try child.start() }
            #expect(error?.code == .unsafeFork)
            #expect(error?.message.contains("forkserver") == true)
            #expect(throws: MultiprocessingError.self) { try forkProcess() }
        }

        @Test("a fork waits for a pool engine's round (a completion callback) to end; a fork from a callback does not wait for itself")
        func forkWaitsForEngineRound() async throws {
            // In a spawned child: the test runner's own threads make forking here unsound.
            let result = try await ChildProcess.run(ForkDuringEngineRound(), startMethod: .spawn)
            #expect(result == [2, 7], "[phase when the fork returned (2: after the callback), exit code of the child forked from a callback]")
        }

        @Test("async, nested, generic and Codable-result tasks", arguments: taskMethods)
        func taskShapes(method: StartMethod) async throws {
            #expect(try await ChildProcess.run(AsyncSquare(number: 9), startMethod: method) == 81)
            #expect(try await ChildProcess.run(Outer.Nested(value: "abc"), startMethod: method) == "ABC")
            #expect(try await ChildProcess.run(Generic(value: 2.5), startMethod: method) == [2.5, 2.5])
            #expect(
                try await ChildProcess.run(Generic(value: Greeting(text: "x", numbers: [])), startMethod: method).count
                    == 2)
            let greeting = try await ChildProcess.run(MakeGreeting(name: "you"), name: "greeter", startMethod: method)
            #expect(greeting == Greeting(text: "hello you from greeter", numbers: [1, 2, 3]))
        }

        @Test("a private task type is refused in the parent with an error that says how to fix it")
        func privateTypeRefused() {
            let error = #expect(throws: MultiprocessingError.self) { _ = try ChildProcess(PrivateTask()) }
            #expect(error?.code == .unresolvableTask)
            #expect(error?.message.contains("private") == true)
            #expect(error?.message.contains("Declare it internal or public") == true)
        }

        @Test("a Codable error thrown in the child arrives as its own type", arguments: taskMethods)
        func codableErrorArrivesTyped(method: StartMethod) async throws {
            let child = try ChildProcess(ThrowsCodable(), startMethod: method)
            try child.start()
            try await child.join()
            #expect(child.exitCode == 1)
            #expect(throws: TaskFailure(code: 42, reason: "thrown in the child")) { try child.value }
        }

        @Test("another error arrives as RemoteError with its type name and description")
        func plainErrorArrivesAsRemoteError() async throws {
            let error = await #expect(throws: RemoteError.self) {
                try await ChildProcess.run(ThrowsPlain(), name: "plain")
            }
            #expect(error?.typeName.hasSuffix("PlainError") == true)
            #expect(error?.errorDescription == "a plain error")
            #expect(error?.processName == "plain")
        }

        @Test(
            "a child that crashes reports its signal or exit code",
            arguments: [
                (Crash.Way.sigkill, TerminationStatus.signaled(.kill)),
                (.abort, .signaled(.abort)),
                (.segfault, .signaled(.segmentationFault)),
                (.exit3, .exited(3)),
            ])
        func crashReportsStatus(way: Crash.Way, expected: TerminationStatus) async throws {
            for method in Self.taskMethods {
                let child = try ChildProcess(Crash(way: way), startMethod: method)
                try child.start()
                try await child.join()
                #expect(child.terminationStatus == expected, "\(method)")
                let error = #expect(throws: MultiprocessingError.self) { try child.value }
                #expect(error?.code == .processDied)
                #expect(error?.message.contains(expected.description) == true)
            }
            #expect(TerminationStatus.signaled(.kill).exitCode == -9)
        }

        @Test("join with a timeout returns while the child still runs")
        func joinTimeout() throws {
            let child = try ChildProcess(Sleep(milliseconds: 2000))
            try child.start()
            let start = ContinuousClock.now
            #expect(try child.join(timeout: .milliseconds(100)) == false)
            #expect(ContinuousClock.now - start < .milliseconds(1500))
            #expect(child.isAlive)
            #expect(child.exitCode == nil)
            #expect(throws: MultiprocessingError.self) { try child.close() }
            try child.kill()
            #expect(try child.join(timeout: .seconds(10)))
            #expect(child.terminationStatus == .signaled(.kill))
            try child.close()
        }

        @Test("terminate sends SIGTERM and kill sends SIGKILL", arguments: taskMethods)
        func terminateAndKill(method: StartMethod) async throws {
            let sleeper = try ChildProcess(Sleep(milliseconds: 60_000), startMethod: method)
            try sleeper.start()
            try sleeper.terminate()
            try await sleeper.join()
            #expect(sleeper.terminationStatus == .signaled(.terminate))
            #expect(sleeper.exitCode == -SIGTERM)

            let stubborn = try ChildProcess(StubbornSleeper(), startMethod: method)
            try stubborn.start()
            usleep(200_000)
            try stubborn.terminate()
            #expect(try await stubborn.join(timeout: .milliseconds(300)) == false)
            try stubborn.kill()
            try await stubborn.join()
            #expect(stubborn.terminationStatus == .signaled(.kill))
            // Signalling a process that ended does nothing.
            try stubborn.terminate()
        }

        @Test("start twice, join before start, and close after close are clear errors")
        func lifecycleErrors() throws {
            let child = try ChildProcess(Nothing())
            #expect(throws: MultiprocessingError.self) { try child.join() }
            try child.start()
            let again = #expect(throws: MultiprocessingError.self) { try child.start() }
            #expect(again?.code == .alreadyStarted)
            try child.join()
            try child.close()
            try child.close()
            // A closed process refuses what needs the process, as Python's raises ValueError.
            for (what, call) in [
                ("join", { _ = try child.join() }), ("join(timeout:)", { _ = try child.join(timeout: .seconds(1)) }),
                ("terminate", { try child.terminate() }), ("kill", { try child.kill() }),
            ] as [(String, () throws -> Void)] {
                let error = #expect(throws: MultiprocessingError.self, "\(what)") { try call() }
                #expect(error?.code == .closed, "\(what)")
            }
            #expect(!child.isAlive)
        }

        @Test("an async join of a closed process is refused too")
        func asyncJoinAfterClose() async throws {
            let child = try ChildProcess(Nothing())
            try child.start()
            try await child.join()
            try child.close()
            let error = await #expect(throws: MultiprocessingError.self) { try await child.join() }
            #expect(error?.code == .closed)
        }

        @Test("the child knows its name and parent, and the boot marker is gone from its environment")
        func identity() async throws {
            for method in Self.taskMethods {
                let answer = try await ChildProcess.run(WhoAmI(), name: "who", startMethod: method)
                #expect(answer.name == "who")
                #expect(answer.parentName == "MainProcess")
                #expect(answer.bootVariable == false)
                #expect(answer.pid != getpid())
                #expect(answer.parentPID == getpid())
            }
            #expect(currentProcess.name == "MainProcess")
            #expect(parentProcess == nil)
        }

        @Test("a child inherits only the descriptors it needs", arguments: taskMethods)
        func childDescriptors(method: StartMethod) async throws {
            let descriptors = try await ChildProcess.run(CountDescriptors(), startMethod: method)
            // The outcome pipe and the lifeline; nothing of the parent's.
            #expect(descriptors.count <= 3, "child has \(descriptors)")
        }

        @Test("activeChildren lists running children and reaps finished ones")
        func activeChildrenListsRunning() throws {
            let sleeper = try ChildProcess(Sleep(milliseconds: 60_000))
            try sleeper.start()
            #expect(activeChildren().contains { $0 === sleeper })
            try sleeper.kill()
            try sleeper.join()
            #expect(!activeChildren().contains { $0 === sleeper })
        }

        @Test("the CPU count respects the affinity mask")
        func cpuCount() {
            let count = availableCPUCount()
            #expect(count >= 1)
            #expect(count <= Int(sysconf(Int32(_SC_NPROCESSORS_ONLN))))
        }

        @Test("1000 starts leave no zombie and no leaked descriptor", .timeLimit(.minutes(3)))
        func noLeaks() throws {
            let warmUp = try ChildProcess(Nothing(), startMethod: .forkserver)
            try warmUp.start()
            try warmUp.join()
            let before = openDescriptors()
            for index in 0..<1000 {
                let method: StartMethod = index % 10 == 0 ? .spawn : .forkserver
                let child = try ChildProcess(Square(number: index), startMethod: method)
                try child.start()
                try child.join()
                #expect(try child.value == index * index)
                try child.close()
            }
            #expect(zombieChildren().isEmpty)
            #expect(openDescriptors() == before)
        }
    }
}
