// The tour: Python's multiprocessing tutorial, section by section, in Swift.
//
//     swift run multiprocessing-tour
//
// Every section prints what its Python original prints. The tour stays
// single-threaded (it blocks in join instead of awaiting), so the sections
// that fork the tour itself are safe.
#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import Multiprocessing

/// Prints and flushes at once, so the tour's lines and its children's stay in
/// order when the output goes to a pipe or a file (which buffer by blocks).
func say(_ line: String) {
    print(line)
    fflush(nil)
}

func section(_ title: String) {
    say("\n== \(title) ==")
}

// 1. os.fork() three times: every process forks, so 2 * 2 * 2 = 8 processes print.
// The heading is printed without flushing: forkProcess() flushes standard
// output first, so it appears once, not once per process.
print("\n== 1. fork() three times makes 8 processes ==")
var forkedChildren: [Int32] = []
var isForkedChild = false
for _ in 0..<3 {
    switch try forkProcess() {
    case .parent(let childPID):
        forkedChildren.append(childPID)
    case .child:
        forkedChildren = []
        isForkedChild = true
    }
}
say("Hello from pid \(getpid())")
for child in forkedChildren { _ = try waitForProcess(child) }
if isForkedChild { exit(0) }

// 2. What fork() returns: the child's pid in the parent, "child" in the child.
section("2. fork() in the parent and in the child")
switch try forkProcess() {
case .child:
    say("child:  fork() returned .child;  pid \(getpid()), parent pid \(getppid())")
    exit(0)
case .parent(let childPID):
    say("parent: fork() returned pid \(childPID); pid \(getpid()), parent pid \(getppid())")
    _ = try waitForProcess(childPID)
}

// 3. Process(target=work, args=(num,)): start, join, join(timeout), close.
section("3. a process from a function and its argument")
let worker = try ChildProcess(Work(number: 1))
try worker.start()
try worker.join()
say("joined \(worker.name): exit code \(worker.exitCode!)")
try worker.close()

let slow = try ChildProcess(Nap(milliseconds: 600))
try slow.start()
let ended = try slow.join(timeout: .milliseconds(100))
say("join(timeout: 0.1 s) returned \(ended); still alive: \(slow.isAlive)")
try slow.join()
say("joined \(slow.name): exit code \(slow.exitCode!); alive: \(slow.isAlive)")
try slow.close()

// 4. A process defined as a type with its own run(), ten of them.
section("4. ten processes of a type with its own run()")
let greeters = try (0..<10).map { try ChildProcess(Greeter(index: $0)) }
for greeter in greeters { try greeter.start() }
for greeter in greeters { try greeter.join() }
say("all \(greeters.count) joined")

// 5. Pool(3) with apply_async, close, join.
section("5. a pool of 3 workers")
let pool = try ProcessPool(workers: 3)
for number in 1...3 { _ = try pool.submit(SleepAndPrint(number: number)) }
pool.close()
pool.join()
say("Finish!!!")

// 6. Processes do not share variables.
section("6. processes don't share variables")
let incrementers = try (0..<3).map { _ in try ChildProcess(IncrementGlobal()) }
for child in incrementers { try child.start() }
for child in incrementers { try child.join() }
say("parent: counter = \(counter)")

// 7. The same counter, in shared memory: now the children's increments add up.
section("7. the same counter in shared memory")
let sharedCounter = try SharedValue(0)
let sharers = try (0..<3).map { _ in try ChildProcess(IncrementShared(counter: sharedCounter)) }
for child in sharers { try child.start() }
for child in sharers { try child.join() }
say("parent: shared counter = \(sharedCounter.value)")

// 8. Several processes writing to one file.
section("8. several processes writing to one file")
let path = "/tmp/multiprocessing-tour-\(getpid()).txt"
let writers = try (0..<4).map { try ChildProcess(AppendLines(path: path, writer: $0, lines: 3)) }
for writer in writers { try writer.start() }
for writer in writers { try writer.join() }
let lines = try readLines(path)
unlink(path)
say("\(path) has \(lines.count) lines from \(Set(lines.map { $0.prefix(8) }).count) writers:")
for line in lines.sorted() { say("  \(line)") }

// 9. A Queue between processes: two children put 1 and 2, the parent gets both.
section("9. a queue between processes")
let queue = try ProcessQueue<Int>()
let producers = try [1, 2].map { try ChildProcess(PutNumber(queue: queue, number: $0)) }
for producer in producers { try producer.start() }
let received = [try queue.get(), try queue.get()]
for producer in producers { try producer.join() }
say("parent got \(received.sorted())")
