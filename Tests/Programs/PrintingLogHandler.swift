#if canImport(Glibc)
    import Glibc
#endif
import Logging

/// Prints each record on standard output, `log: <message> <key>=<value>...`,
/// for a test to read what a pool did.
struct PrintingLogHandler: LogHandler {
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level = .trace

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let fields = (event.metadata ?? [:]).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
        let line = (["log: \(event.message)"] + fields).joined(separator: " ") + "\n"
        _ = line.withCString { write(1, $0, strlen($0)) }
    }
}
