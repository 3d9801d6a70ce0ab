// A producer/consumer pipeline: two producer processes put jobs on a queue,
// three consumer processes take them, work, and put results on another
// queue, which the parent reads. The same program in Python is pipeline.py,
// beside this file.
//
//     swift run Pipeline [jobs]
import Multiprocessing

/// One piece of work.
struct Job: Codable, Sendable {
    var id: Int
    var numbers: [Int]
}

/// What a consumer made of a job.
struct Outcome: Codable, Sendable {
    var id: Int
    var sumOfSquares: Int
    var consumer: Int
}

/// Puts jobs `first ..< first + count` on the queue.
struct Producer: ProcessTask {
    var jobs: ProcessQueue<Job?>
    var first: Int
    var count: Int

    func run() throws {
        for id in first..<(first + count) {
            try jobs.put(Job(id: id, numbers: Array(id..<(id + 100))))
        }
    }
}

/// Takes jobs until it gets `nil` (Python's sentinel `None`); returns how many it did.
struct Consumer: ProcessTask {
    var number: Int
    var jobs: ProcessQueue<Job?>
    var outcomes: ProcessQueue<Outcome>

    func run() throws -> Int {
        var done = 0
        while let job = try jobs.get() {
            let sum = job.numbers.reduce(0) { $0 + $1 * $1 }
            try outcomes.put(Outcome(id: job.id, sumOfSquares: sum, consumer: number))
            done += 1
        }
        return done
    }
}

let jobCount = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1])! : 20_000
let jobs = try ProcessQueue<Job?>(maxCount: 1_000)
let outcomes = try ProcessQueue<Outcome>()

let half = jobCount / 2
let producers = [
    try ChildProcess(Producer(jobs: jobs, first: 0, count: half)),
    try ChildProcess(Producer(jobs: jobs, first: half, count: jobCount - half)),
]
let consumers = try (0..<3).map { try ChildProcess(Consumer(number: $0, jobs: jobs, outcomes: outcomes)) }
for process in producers + consumers { try process.start() }

var total = 0
var seen = Set<Int>()
for _ in 0..<jobCount {
    let outcome = try outcomes.get()
    total &+= outcome.sumOfSquares
    seen.insert(outcome.id)
}
for producer in producers { try producer.join() }
for _ in consumers { try jobs.put(nil) }
for consumer in consumers { try consumer.join() }

print("\(seen.count) distinct jobs done, checksum \(total)")
for (index, consumer) in consumers.enumerated() {
    print("consumer \(index): \(try consumer.value) jobs, exit code \(consumer.exitCode!)")
}
