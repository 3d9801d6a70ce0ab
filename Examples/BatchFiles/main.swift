// A CPU-bound batch: summarise 2,000 text files on every core, with a
// progress bar. The same program in Python is batch_files.py, beside this file.
//
//     swift run -c release BatchFiles [count]
import Foundation
import Multiprocessing

/// What one file holds.
struct Summary: Codable, Sendable {
    var words: Int
    var longestWord: String
    var checksum: UInt64
}

/// The work done on each file, in a worker process (Python's function passed to `pool.imap`).
enum Summarize: ProcessFunction {
    static func call(_ path: String) throws -> Summary {
        let text = try String(contentsOfFile: path, encoding: .utf8)
        var summary = Summary(words: 0, longestWord: "", checksum: 14_695_981_039_346_656_037)
        for word in text.split(separator: " ") {
            summary.words += 1
            if word.count > summary.longestWord.count { summary.longestWord = String(word) }
            // Some real work per word: a few rounds of FNV-1a over its bytes.
            for _ in 0..<4 {
                for byte in word.utf8 { summary.checksum = (summary.checksum ^ UInt64(byte)) &* 1_099_511_628_211 }
            }
        }
        return summary
    }
}

let count = CommandLine.arguments.count > 1 ? Int(CommandLine.arguments[1])! : 2_000
let directory = FileManager.default.temporaryDirectory.appendingPathComponent("batch-files-\(getpid())")
try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
defer { try? FileManager.default.removeItem(at: directory) }

// Make the files: 2,000 files of 2,000 words each.
let syllables = ["ka", "lo", "mi", "ne", "ru", "sa", "to", "vi"]
var generator = SystemRandomNumberGenerator()
var paths: [String] = []
for index in 0..<count {
    var words: [String] = []
    for _ in 0..<2_000 {
        words.append((0..<Int.random(in: 1...5, using: &generator)).map { _ in syllables.randomElement()! }.joined())
    }
    let path = directory.appendingPathComponent("file-\(index).txt").path
    try words.joined(separator: " ").write(toFile: path, atomically: false, encoding: .utf8)
    paths.append(path)
}

let start = ContinuousClock.now
let summaries = try await withProcessPool { pool in
    try await pool.map(Summarize.self, paths).showingProgressBar(label: "files").collect()
}
let longest = summaries.map(\.longestWord).max { $0.count < $1.count }!
print("\(summaries.count) files, \(summaries.reduce(0) { $0 + $1.words }) words, longest word \(longest)")
print("in \(ContinuousClock.now - start) on \(availableCPUCount()) cores")
