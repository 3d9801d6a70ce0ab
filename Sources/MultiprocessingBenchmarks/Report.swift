#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// One measured workload, in the JSON shape of `shared/bench/WORKLOADS.md` (schema 1).
struct Measurement {
    var name: String
    var unit: String
    var better: String
    var samples: [Double]
    var note: String

    var sorted: [Double] { samples.sorted() }
    var median: Double {
        let values = sorted
        let middle = values.count / 2
        return values.count % 2 == 1 ? values[middle] : (values[middle - 1] + values[middle]) / 2
    }

    var json: String {
        """
        {"name": \(quoted(name)), "unit": \(quoted(unit)), "better": \(quoted(better)), \
        "median": \(number(median)), "min": \(number(sorted.first!)), "max": \(number(sorted.last!)), \
        "reps": \(samples.count), "note": \(quoted(note))}
        """
    }
}

struct Report {
    var params: [(String, String)] = []
    var results: [Measurement] = []

    mutating func add(_ result: Measurement) {
        results.append(result)
        let line =
            "\(result.name.padding(40)) \(format(result.median).padding(12)) \(result.unit.padding(8)) "
            + "min \(format(result.sorted.first!)) max \(format(result.sorted.last!)) reps \(result.samples.count)"
        printToStandardError(line)
    }

    func json() -> String {
        let machine = """
            {"nproc": \(sysconf(Int32(_SC_NPROCESSORS_ONLN))), "cpu_model": \(quoted(cpuModel())), \
            "kernel": \(quoted(kernel())), "loadavg_1m": \(quoted(loadAverage()))}
            """
        let parameters = params.map { "\(quoted($0.0)): \(quoted($0.1))" }.joined(separator: ", ")
        let entries = results.map { "    " + $0.json }.joined(separator: ",\n")
        return """
            {
              "tool": "swift-multiprocessing-bench",
              "schema": 1,
              "machine": \(machine),
              "params": {\(parameters)},
              "results": [
            \(entries)
              ]
            }

            """
    }
}

func quoted(_ text: String) -> String {
    var result = "\""
    for scalar in text.unicodeScalars {
        switch scalar {
        case "\"": result += "\\\""
        case "\\": result += "\\\\"
        case "\n": result += "\\n"
        default:
            if scalar.value < 0x20 {
                result += "\\u00" + String(scalar.value, radix: 16).padding(2, with: "0", left: true)
            } else {
                result.unicodeScalars.append(scalar)
            }
        }
    }
    return result + "\""
}

func number(_ value: Double) -> String {
    value.isFinite ? "\(value)" : "null"
}

func format(_ value: Double) -> String {
    if value >= 1e6 { return "\(Double(Int(value / 1e4)) / 100)M" }
    if value >= 1000 { return "\(Double(Int(value / 10)) / 100)k" }
    if value >= 1 { return "\(Double(Int(value * 100)) / 100)" }
    return "\(Double(Int(value * 10000)) / 10000)"
}

extension String {
    func padding(_ width: Int, with pad: Character = " ", left: Bool = false) -> String {
        let fill = String(repeating: pad, count: max(0, width - count))
        return left ? fill + self : self + fill
    }
}

func firstLine(ofFile path: String, startingWith prefix: String) -> String? {
    guard let file = fopen(path, "r") else { return nil }
    defer { fclose(file) }
    var buffer = [CChar](repeating: 0, count: 1024)
    while fgets(&buffer, Int32(buffer.count), file) != nil {
        let line = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if line.hasPrefix(prefix) { return line.trimmingNewline() }
    }
    return nil
}

extension String {
    func trimmingNewline() -> String { hasSuffix("\n") ? String(dropLast()) : self }
}

func cpuModel() -> String {
    guard let line = firstLine(ofFile: "/proc/cpuinfo", startingWith: "model name") else { return "unknown" }
    return line.split(separator: ":", maxSplits: 1).last.map { String($0.drop { $0 == " " }) } ?? "unknown"
}

func kernel() -> String {
    var name = utsname()
    uname(&name)
    return withUnsafeBytes(of: name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
}

func loadAverage() -> String {
    firstLine(ofFile: "/proc/loadavg", startingWith: "")?.split(separator: " ").first.map(String.init) ?? "?"
}

func printToStandardError(_ line: String) {
    let bytes = Array((line + "\n").utf8)
    _ = bytes.withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
}
