#if canImport(Glibc)
    import Glibc
#endif
import Foundation
import Testing

extension ProcessSuites {
    @Suite("Processes the library starts begin clean", .serialized, .timeLimit(.minutes(2)))
    struct CleanStartTests {
        @Test(
            "started with SIGCHLD and SIGTERM blocked and SIGTERM ignored, a program's ForkingPool ends and terminate() stops its .fork and .forkserver children", .disabled(if: runningUnderThreadSanitizer, "a program that forks on its own main thread is refused under ThreadSanitizer, whose thread makes every process multi-threaded")
        )
        func signalsBlockedAtStart() throws {
            let run = try runTestProgram(
                ["started-with-signals-blocked"], blocking: [SIGCHLD, SIGTERM], ignoring: [SIGTERM],
                timeout: .seconds(30))
            let report = "\(run.output)\n\(run.errors)"
            #expect(!run.timedOut, "\(report)")
            #expect(run.status == 0, "\(report)")
            #expect(run.elapsed < .seconds(10), "\(run.elapsed)")
            #expect(run.output.contains("started with SIGCHLD blocked: true"), "\(report)")
            #expect(run.output.contains("forking pool map: true"), "\(report)")
            #expect(run.output.contains("forking pool joined"), "\(report)")
            #expect(run.output.contains("fork child value: 42"), "\(report)")
            #expect(run.output.contains("fork child terminated: killed by SIGTERM"), "\(report)")
            #expect(run.output.contains("forkserver child terminated: killed by SIGTERM"), "\(report)")
        }

        @Test("ForkingPool workers that exit normally (maxTasksPerWorker: 1, then close()) exit with code 0, silently")
        func recycledForkingPoolWorkersExitCleanly() throws {
            let run = try runTestProgram(["forking-pool-recycles"], timeout: .seconds(60))
            let report = "\(run.output)\n\(run.errors)"
            #expect(!run.timedOut, "\(report)")
            #expect(run.status == 0, "\(report)")
            #expect(run.output.contains("squares true"), "\(report)")
            #expect(!run.errors.contains("Fatal error"), "\(report)")
            let exits = run.output.split(separator: "\n").filter { $0.hasPrefix("log: pool worker exited") }
            // 20 items, one per worker, and the 2 workers standing at close().
            #expect(exits.count >= 20, "\(report)")
            for line in exits {
                #expect(line.contains("status=exited with code 0"), "\(line)")
            }
        }

        @Test(
            "in an async main, ForkingPools made before the first await and the closure forms with allowingOtherThreads: true work; a late fork is refused, naming the threads", .disabled(if: runningUnderThreadSanitizer, "a program that forks on its own main thread is refused under ThreadSanitizer, whose thread makes every process multi-threaded")
        )
        func closureFormsInAnAsyncProgram() throws {
            let run = try runTestProgram([], program: "MultiprocessingAsyncClosureProgram", timeout: .seconds(60))
            let report = "\(run.output)\n\(run.errors)"
            #expect(!run.timedOut, "\(report)")
            #expect(run.status == 0, "\(report)")
            for line in [
                "early pool map: true", "second pool apply: 7", "late fork child refused: true", "risky pool map: true",
                "risky pool terminated", "fork child value: 42", "fork child terminated: killed by SIGTERM", "done",
            ] {
                #expect(run.output.contains(line), "\(line): \(report)")
            }
            let refusal = try #require(run.output.split(separator: "\n").first { $0.hasPrefix("late pool refused") })
            #expect(refusal.hasPrefix("late pool refused: true: fork refused"), "\(refusal)")
            #expect(refusal.contains("of Dispatch, which runs Swift concurrency's tasks"), "\(refusal)")
            #expect(refusal.contains("the main thread"), "\(refusal)")
            // The library's own threads (the two early pools' engines) are not counted.
            #expect(!refusal.contains("mp-"), "\(refusal)")
        }
    }
}
