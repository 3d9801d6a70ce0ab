import Foundation
import Testing

extension ProcessSuites {
    /// The programs in `Examples/`, run briefly as a user runs them: their own
    /// binaries, built beside the tests, with default options.
    @Suite("The examples", .serialized, .timeLimit(.minutes(3)))
    struct ExamplesTests {
        /// Runs an example's binary; returns its exit status and standard output.
        static func runExample(
            _ name: String, _ arguments: [String], environment: [String: String] = [:]
        ) throws -> (status: Int32, lines: [String]) {
            let directory = (try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") as NSString)
                .deletingLastPathComponent
            let path = directory + "/" + name
            try #require(
                FileManager.default.isExecutableFile(atPath: path), "build the examples: swift build (\(path))")
            let process = Foundation.Process()
            process.executableURL = URL(fileURLWithPath: path)
            process.arguments = arguments
            // Under LeakSanitizer a whole program's exit reports what its
            // top-level code still held, and drops its buffered output.
            let sanitizer = runningUnderAddressSanitizer ? ["ASAN_OPTIONS": "detect_leaks=0"] : [:]
            process.environment = ProcessInfo.processInfo.environment.merging(environment.merging(sanitizer) { $1 }) {
                $1
            }
            let pipe = Pipe()
            process.standardOutput = pipe
            process.standardError = FileHandle.nullDevice
            try process.run()
            let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            process.waitUntilExit()
            return (process.terminationStatus, output.split(separator: "\n").map(String.init))
        }

        @Test("the batch summarises every generated file, in a pool with a progress bar")
        func batchFiles() throws {
            let (status, lines) = try Self.runExample("BatchFiles", ["40"])
            #expect(status == 0)
            // 40 files of 2,000 words each.
            #expect(lines.first?.hasPrefix("40 files, 80000 words, longest word ") == true, "\(lines)")
        }

        @Test("the flaky function fails exactly the inputs that crash or hang, each with its own error")
        func flakyFunction() throws {
            // Without the crash reporter, whose backtrace can take longer than
            // the example's timeout on a loaded machine (issue 11, item 7).
            let (status, lines) = try Self.runExample(
                "FlakyFunction", ["120"], environment: ["SWIFT_BACKTRACE": "enable=no"])
            #expect(status == 0)
            // Crashes at ids 36, 73, 110 (id % 37 == 36); hangs at 52, 105 (id % 53 == 52).
            #expect(lines.first == "115 records decoded, 5 failed:", "\(lines)")
            let failures = Dictionary(
                lines.dropFirst().compactMap { line -> (Int, String)? in
                    guard let match = line.firstMatch(of: /^  record (\d+): (.*)$/) else { return nil }
                    return (Int(match.1)!, String(match.2))
                }, uniquingKeysWith: { first, _ in first })
            #expect(failures.keys.sorted() == [36, 52, 73, 105, 110], "\(lines)")
            // Under a sanitizer its own handler reports a crash and exits: with code 1 under ASan, 66 under TSan.
            let crashed =
                runningUnderAddressSanitizer
                ? "exited with code 1" : runningUnderThreadSanitizer ? "exited with code 66" : "killed by SIGSEGV"
            for id in [36, 73, 110] {
                #expect(failures[id]?.contains(crashed) == true, "\(failures[id] ?? "")")
                #expect(failures[id]?.contains("item \(id)") == true, "\(failures[id] ?? "")")
            }
            for id in [52, 105] {
                #expect(failures[id]?.contains("ran longer than its timeout") == true, "\(failures[id] ?? "")")
                #expect(failures[id]?.contains("item \(id)") == true, "\(failures[id] ?? "")")
            }
        }

        @Test("the pipeline's consumers do every job once, between them, and exit cleanly")
        func pipeline() throws {
            let jobs = 600
            let (status, lines) = try Self.runExample("Pipeline", ["\(jobs)"])
            #expect(status == 0)
            let checksum = (0..<jobs).reduce(0) { total, id in total + (id..<(id + 100)).reduce(0) { $0 + $1 * $1 } }
            #expect(lines.first == "\(jobs) distinct jobs done, checksum \(checksum)", "\(lines)")
            let consumers = lines.dropFirst().compactMap { $0.firstMatch(of: /^consumer \d: (\d+) jobs, exit code 0$/) }
            #expect(consumers.count == 3, "\(lines)")
            #expect(consumers.reduce(0) { $0 + Int($1.1)! } == jobs, "\(lines)")
        }
    }
}
