#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// How far a map has come.
public struct PoolProgress: Sendable, Hashable, CustomStringConvertible {
    /// Items whose results have arrived.
    public var done: Int
    /// All items, when the input is a collection; `nil` for other sequences.
    public var total: Int?
    /// Time since the map started.
    public var elapsed: Duration
    /// Whether every input has been read and every result has arrived.
    public var isFinished: Bool

    /// Items per second so far.
    public var rate: Double {
        let seconds = Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) * 1e-18
        return seconds > 0 ? Double(done) / seconds : 0
    }

    /// The fraction done, when the total is known.
    public var fraction: Double? {
        total.map { $0 == 0 ? 1 : Double(done) / Double($0) }
    }

    /// The estimated time left at the current rate, when the total is known.
    public var estimatedTimeLeft: Duration? {
        guard let total, rate > 0 else { return nil }
        return .milliseconds(Int64(Double(max(0, total - done)) / rate * 1000))
    }

    public var description: String {
        var text = total.map { "\(done)/\($0)" } ?? "\(done)"
        text += " items, \(Int(rate.rounded()))/s"
        if let left = estimatedTimeLeft, !isFinished { text += ", ETA \(formatSeconds(left))" }
        return text
    }
}

func formatSeconds(_ duration: Duration) -> String {
    let seconds = duration.components.seconds
    if seconds >= 3600 { return "\(seconds / 3600)h\(seconds % 3600 / 60)m" }
    if seconds >= 60 { return "\(seconds / 60)m\(seconds % 60)s" }
    return "\(seconds)s"
}

/// A one-line progress bar on standard error, redrawn at most 10 times a second.
final class ProgressBar: @unchecked Sendable {
    // @unchecked: `lastDraw` is only touched by the map's iterating task.
    private let label: String
    private var lastDraw: ContinuousClock.Instant?

    /// `nil` when standard error is not a terminal: nothing is drawn then.
    init?(label: String) {
        guard isatty(2) != 0 else { return nil }
        self.label = label
    }

    func draw(_ progress: PoolProgress) {
        let now = ContinuousClock.now
        if !progress.isFinished, let lastDraw, now - lastDraw < .milliseconds(100) { return }
        lastDraw = now
        var line = "\r" + (label.isEmpty ? "" : label + " ")
        if let fraction = progress.fraction {
            let width = 30
            let filled = min(width, Int(fraction * Double(width)))
            line +=
                "[" + String(repeating: "#", count: filled)
                + String(repeating: ".", count: width - filled) + "] \(Int(fraction * 100))% "
        }
        line += progress.description + "\u{1B}[K"
        if progress.isFinished { line += "\n" }
        Platform.writeStandardError(line)
    }
}
