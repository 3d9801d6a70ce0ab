#if canImport(Glibc)
    import Glibc
#endif
import Testing
@testable import Multiprocessing

extension ProcessSuites {
    @Suite("The tour", .serialized, .timeLimit(.minutes(2)))
    struct TourTests {
        /// The tour binary, built beside the test bundle by `swift build` or `swift test`.
        static func tourPath() throws -> String {
            var buffer = [CChar](repeating: 0, count: 4096)
            let count = readlink("/proc/self/exe", &buffer, buffer.count - 1)
            try #require(count > 0)
            let exe = String(decoding: buffer[..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
            var directory = exe[..<exe.lastIndex(of: "/")!]
            if directory.hasSuffix(".xctest") || directory.contains(".xctest/") {
                directory = directory[..<directory.lastIndex(of: "/")!]
            }
            return directory + "/multiprocessing-tour"
        }

        @Test(
            "the tour prints what Python's tutorial prints, section by section",
            .disabled(if: runningUnderThreadSanitizer, "the tour forks on its main thread, refused under ThreadSanitizer, whose thread makes every process multi-threaded"))
        func tourOutput() throws {
            let path = try Self.tourPath()
            try #require(access(path, X_OK) == 0, "build the tour first: swift build (looked for \(path))")
            let output = try runCapturingOutput(path)
            let lines = output.split(separator: "\n").map(String.init)
            let sections = lines.filter { $0.hasPrefix("== ") }
            #expect(sections.count == 9)
            // fork() flushed the buffered heading first: it is printed once, not by all 8 processes.
            #expect(sections.filter { $0.hasPrefix("== 1.") }.count == 1)
            func body(_ number: Int) -> [String] {
                guard let start = lines.firstIndex(where: { $0.hasPrefix("== \(number).") }) else { return [] }
                let rest = lines[(start + 1)...]
                let end = rest.firstIndex(where: { $0.hasPrefix("== ") }) ?? lines.endIndex
                return lines[(start + 1)..<end].filter { !$0.isEmpty }
            }
            // 1: eight distinct processes say hello.
            let hellos = body(1).filter { $0.hasPrefix("Hello from pid ") }
            #expect(hellos.count == 8)
            #expect(Set(hellos).count == 8)
            // 2: the parent sees the child's pid, the child sees it is the child and its parent.
            let two = body(2)
            #expect(two.count == 2)
            #expect(two.contains { $0.hasPrefix("parent: fork() returned pid ") })
            #expect(two.contains { $0.hasPrefix("child:  fork() returned .child") })
            // 3: work(1) runs in a child; join with a timeout returns false while it runs.
            let three = body(3)
            #expect(three.contains { $0.hasPrefix("work(1) in ChildProcess-") })
            #expect(three.contains("join(timeout: 0.1 s) returned false; still alive: true"))
            #expect(three.contains { $0.hasSuffix("exit code 0; alive: false") })
            // 4: ten greeters, each once.
            let greeters = body(4).filter { $0.hasPrefix("Greeter ") }
            #expect(Set(greeters.map { $0.split(separator: " ")[1] }) == Set((0..<10).map { "\($0)" }))
            // 5: three pool tasks, each once, then "Finish!!!" after all of them.
            let five = body(5)
            #expect(
                five.filter { $0.hasPrefix("task ") }.map { $0.split(separator: " ")[1] }.sorted() == ["1", "2", "3"])
            #expect(five.last == "Finish!!!")
            // 6: every child sees 1, the parent still 0.
            let six = body(6)
            #expect(six.filter { $0.hasSuffix("counter = 1") }.count == 3)
            #expect(six.last == "parent: counter = 0")
            // 7: in shared memory the children's increments add up: 1, 2, 3 in some order, and 3 in the parent.
            let seven = body(7)
            #expect(seven.filter { $0.contains("shared counter = ") && $0.hasPrefix("child") }.count == 3)
            #expect(seven.last == "parent: shared counter = 3")
            // 8: 4 writers x 3 lines, none lost.
            let eight = body(8)
            #expect(eight.first?.hasSuffix("has 12 lines from 4 writers:") == true)
            // 9: two children put 1 and 2 into a queue, the parent gets both.
            let nine = body(9)
            #expect(nine.filter { $0.hasPrefix("child ") && $0.contains(" put ") }.count == 2)
            #expect(nine.last == "parent got [1, 2]")
        }
    }
}

/// Runs a program and returns its standard output; fails if it does not exit 0 within a minute.
func runCapturingOutput(_ path: String) throws -> String {
    var fds: [Int32] = [-1, -1]
    try #require(pipe(&fds) == 0)
    var actions = posix_spawn_file_actions_t()
    posix_spawn_file_actions_init(&actions)
    posix_spawn_file_actions_adddup2(&actions, fds[1], 1)
    posix_spawn_file_actions_addclose(&actions, fds[0])
    var pid: pid_t = 0
    let argv: [UnsafeMutablePointer<CChar>?] = [strdup(path), nil]
    let result = posix_spawn(&pid, path, &actions, nil, argv, environ)
    posix_spawn_file_actions_destroy(&actions)
    free(argv[0])
    close(fds[1])
    try #require(result == 0)
    var output: [UInt8] = []
    var chunk = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = read(fds[0], &chunk, chunk.count)
        if count <= 0 { break }
        output += chunk[..<count]
    }
    close(fds[0])
    var status: Int32 = 0
    waitpid(pid, &status, 0)
    #expect(status == 0, "the tour exited with wait status \(status)")
    return String(decoding: output, as: UTF8.self)
}
