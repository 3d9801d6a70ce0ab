// Compiles the Swift code blocks of Markdown files against the built library,
// each twice: as the `main.swift` of a script (top-level code) and inside an
// `async` function, so a snippet a reader copies compiles in either place.
//
// A block may be preceded by HTML comments (invisible on GitHub and in DocC):
//   <!-- snippet: synchronous -->   the second form is a synchronous function:
//                                   the block shows blocking calls
//   <!-- snippet: script -->        compiled as a main.swift only: the block is
//                                   about top-level code itself
//   <!-- snippet: other package --> not compiled here (it needs a package this
//                                   build does not build, as Cluster/); listed
//   <!-- snippet: manifest -->      the block is a user's Package.swift: its
//                                   `.package(url:...)` is pointed at this
//                                   package, and the package graph is loaded
//                                   (names of products and packages checked)
//   <!-- snippet-context            declarations the block uses but does not
//   struct Work: ProcessTask { ... }  show, compiled before it
//   -->
//
// It also compiles files that must not compile (`--expect-error FILE`): the
// file's `// expected-first-error: TEXT` line names what the compiler's first
// error must contain, `// expected-error: TEXT` lines what one of its errors
// must contain, and `// unexpected: TEXT` lines what no line of its output
// may contain, so a diagnostic can be pinned.
//
// Usage: check-snippets --bin-path PATH --package PATH [--self-test]
//            [--expect-error FILE]... [FILE.md]...
import Foundation

struct Snippet {
    var file: String
    var line: Int  // of the opening fence
    var code: [String]
    var context: [String]
    var synchronous: Bool
    var manifest: Bool
    var scriptOnly: Bool = false
    var otherPackage: Bool = false
}

struct Failure: Error {
    var message: String
}

func snippets(in file: String) throws -> [Snippet] {
    let lines = try String(contentsOfFile: file, encoding: .utf8).components(separatedBy: "\n")
    var result: [Snippet] = []
    var context: [String] = []
    var synchronous = false
    var manifest = false
    var scriptOnly = false
    var otherPackage = false
    var index = 0
    while index < lines.count {
        let line = lines[index]
        let trimmed = line.trimmingCharacters(in: .whitespaces)
        if trimmed == "<!-- snippet: synchronous -->" {
            synchronous = true
        } else if trimmed == "<!-- snippet: manifest -->" {
            manifest = true
        } else if trimmed == "<!-- snippet: script -->" {
            scriptOnly = true
        } else if trimmed == "<!-- snippet: other package -->" {
            otherPackage = true
        } else if trimmed == "<!-- snippet-context" {
            index += 1
            while index < lines.count, lines[index].trimmingCharacters(in: .whitespaces) != "-->" {
                context.append(lines[index])
                index += 1
            }
        } else if trimmed == "```swift" {
            let start = index + 1
            index += 1
            var code: [String] = []
            while index < lines.count, lines[index].trimmingCharacters(in: .whitespaces) != "```" {
                code.append(lines[index])
                index += 1
            }
            // Blocks in a list or a doc comment are indented as a whole.
            let indent =
                code.filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
                .map { $0.prefix(while: { $0 == " " }).count }.min() ?? 0
            code = code.map { String($0.dropFirst(min(indent, $0.prefix(while: { $0 == " " }).count))) }
            result.append(
                Snippet(
                    file: file, line: start, code: code, context: context, synchronous: synchronous,
                    manifest: manifest, scriptOnly: scriptOnly, otherPackage: otherPackage))
            context = []
            synchronous = false
            manifest = false
            scriptOnly = false
            otherPackage = false
        } else if !trimmed.isEmpty && !trimmed.hasPrefix("<!--") {
            // Markers belong to the next block only when nothing but blank lines lies between.
            context = []
            synchronous = false
            manifest = false
            scriptOnly = false
            otherPackage = false
        }
        index += 1
    }
    return result
}

/// Splits a snippet into the declarations that must stay at file scope and
/// the statements that go into a function's body. A declaration starts at
/// column 0 and ends at the first line at column 0 that closes it (`}`), or on
/// its own line when its braces balance there.
func split(_ code: [String]) -> (declarations: [String], statements: [String]) {
    let declarationStart = try! NSRegularExpression(
        pattern:
            #"^(@\w+(\(.*\))? |public |internal |final |nonisolated |indirect )*(import|struct|enum|class|actor|extension|protocol|func|typealias) "#
    )
    var declarations: [String] = []
    var statements: [String] = []
    var inDeclaration = false
    for line in code {
        if inDeclaration {
            declarations.append(line)
            if line.hasPrefix("}") { inDeclaration = false }
            continue
        }
        let range = NSRange(line.startIndex..., in: line)
        if declarationStart.firstMatch(in: line, range: range) != nil {
            declarations.append(line)
            let opened = line.filter { $0 == "{" }.count
            let closed = line.filter { $0 == "}" }.count
            inDeclaration = opened > closed
        } else {
            statements.append(line)
        }
    }
    return (declarations, statements)
}

struct Compiler {
    var binPath: String
    var package: String
    var scratch: String

    func run(_ arguments: [String], in directory: String? = nil) throws -> (status: Int32, output: String) {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = arguments
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return (process.terminationStatus, output)
    }

    /// Loads a user's manifest with its dependency on this package, through a
    /// link named like the package's repository (a path dependency's identity
    /// is its folder's name).
    func checkManifest(_ snippet: Snippet) throws -> [String] {
        let directory = "\(scratch)/manifest-\(snippet.line)"
        try? FileManager.default.removeItem(atPath: directory)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let link = "\(scratch)/swift-multiprocessing"
        try? FileManager.default.removeItem(atPath: link)
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: package)
        var manifest = snippet.code.joined(separator: "\n") + "\n"
        let dependency = try! NSRegularExpression(
            pattern: #"\.package\(url: "[^"]*swift-multiprocessing[^"]*", [^)]*\)"#)
        let range = NSRange(manifest.startIndex..., in: manifest)
        guard dependency.firstMatch(in: manifest, range: range) != nil else {
            return [
                "\(snippet.file):\(snippet.line): the manifest has no .package(url: \"...swift-multiprocessing...\")"
            ]
        }
        manifest = dependency.stringByReplacingMatches(
            in: manifest, range: range, withTemplate: ".package(path: \"\(link)\")")
        try manifest.write(toFile: "\(directory)/Package.swift", atomically: true, encoding: .utf8)
        let targetName = try! NSRegularExpression(pattern: #"Target\(\s*name: "([^"]+)""#)
        for match in targetName.matches(in: manifest, range: NSRange(manifest.startIndex..., in: manifest)) {
            let name = String(manifest[Range(match.range(at: 1), in: manifest)!])
            try FileManager.default.createDirectory(
                atPath: "\(directory)/Sources/\(name)", withIntermediateDirectories: true)
            try "import Multiprocessing\n".write(
                toFile: "\(directory)/Sources/\(name)/main.swift", atomically: true, encoding: .utf8)
        }
        let (status, output) = try run(["swift", "package", "show-dependencies"], in: directory)
        guard status == 0 else {
            return [
                "\(snippet.file):\(snippet.line): the manifest does not load:\n\(output)\n--- Package.swift:\n\(manifest)"
            ]
        }
        return []
    }

    func compile(_ source: String, named name: String, asMain: Bool) throws -> (status: Int32, output: String) {
        let directory = "\(scratch)/\(name)"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let path = "\(directory)/\(asMain ? "main" : "snippet").swift"
        try source.write(toFile: path, atomically: true, encoding: .utf8)
        var arguments = [
            "-swift-version", "6", "-emit-sil", "-o", "/dev/null",
            "-I", "\(binPath)/Modules",
            "-Xcc", "-fmodule-map-file=\(binPath)/CMultiprocessing.build/module.modulemap",
            "-I", "\(package)/Sources/CMultiprocessing/include",
        ]
        if !asMain { arguments.append("-parse-as-library") }
        arguments.append(path)
        return try run(["swiftc"] + arguments)
    }

    /// Compiles a snippet in both forms; returns what failed.
    func check(_ snippet: Snippet, number: Int) throws -> [String] {
        if snippet.manifest { return try checkManifest(snippet) }
        if snippet.otherPackage {
            print("\(snippet.file):\(snippet.line): not compiled here: it belongs to another package")
            return []
        }
        let base = URL(fileURLWithPath: snippet.file).deletingPathExtension().lastPathComponent
        let name = "\(base)-\(snippet.line)"
        let header = ["import Multiprocessing"] + snippet.context
        let script = (header + snippet.code).joined(separator: "\n") + "\n"
        let (declarations, statements) = split(snippet.code)
        let effects = snippet.synchronous ? "throws" : "async throws"
        let function =
            (header + declarations + ["", "func snippet\(number)() \(effects) {"]
            + statements.map { "    " + $0 } + ["}"]).joined(separator: "\n") + "\n"
        var failures: [String] = []
        let forms = [
            ("as main.swift", script, true),
            ("in a\(snippet.synchronous ? " synchronous" : "n async") function", function, false),
        ]
        for (form, source, asMain) in snippet.scriptOnly ? Array(forms.prefix(1)) : forms {
            let (status, output) = try compile(source, named: "\(name)-\(asMain ? "main" : "function")", asMain: asMain)
            if status != 0 {
                let errors = output.components(separatedBy: "\n").filter { $0.contains(": error:") }
                failures.append(
                    "\(snippet.file):\(snippet.line): the snippet does not compile \(form):\n"
                        + errors.joined(separator: "\n") + "\n--- compiled source:\n" + source)
            }
        }
        return failures
    }

    /// Compiles a file that must fail, and checks its errors.
    func checkExpectedError(_ file: String) throws -> String? {
        let source = try String(contentsOfFile: file, encoding: .utf8)
        let lines = source.components(separatedBy: "\n")
        func values(_ prefix: String) -> [String] {
            lines.filter { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)) }
        }
        let first = values("// expected-first-error: ")
        let anywhere = values("// expected-error: ")
        let forbidden = values("// unexpected: ")
        guard !first.isEmpty || !anywhere.isEmpty else {
            return "\(file): has no '// expected-first-error: TEXT' or '// expected-error: TEXT' line"
        }
        let name = "expect-" + URL(fileURLWithPath: file).deletingPathExtension().lastPathComponent
        let (status, output) = try compile(source, named: name, asMain: false)
        if status == 0 { return "\(file): compiled, but must fail" }
        let outputLines = output.components(separatedBy: "\n")
        let errors = outputLines.filter { $0.contains("error:") }
        for expected in first where !(errors.first?.contains(expected) ?? false) {
            return "\(file): the first error must contain '\(expected)'; the compiler said:\n\(output)"
        }
        for expected in anywhere where !errors.contains(where: { $0.contains(expected) }) {
            return "\(file): an error must contain '\(expected)'; the compiler said:\n\(output)"
        }
        for text in forbidden where outputLines.contains(where: { $0.contains(text) }) {
            return "\(file): the compiler's output must not contain '\(text)'; it said:\n\(output)"
        }
        print("\(file): fails as it must: \(errors.prefix(2).joined(separator: " / "))")
        return nil
    }
}

func main() throws {
    var arguments = Array(CommandLine.arguments.dropFirst())
    var binPath: String?
    var package = FileManager.default.currentDirectoryPath
    var selfTest = false
    var expectError: [String] = []
    var files: [String] = []
    while !arguments.isEmpty {
        let argument = arguments.removeFirst()
        switch argument {
        case "--bin-path": binPath = arguments.removeFirst()
        case "--package": package = arguments.removeFirst()
        case "--self-test": selfTest = true
        case "--expect-error": expectError.append(arguments.removeFirst())
        default: files.append(argument)
        }
    }
    guard let binPath else { throw Failure(message: "--bin-path is required (swift build --show-bin-path)") }
    let compiler = Compiler(binPath: binPath, package: package, scratch: "\(binPath)/snippets")

    if selfTest {
        // The checker must be able to fail: a snippet that calls what does not exist.
        let bad = "\(compiler.scratch)/self-test.md"
        try FileManager.default.createDirectory(atPath: compiler.scratch, withIntermediateDirectories: true)
        try "```swift\nlet child = try ChildProcess(NoSuchTask())\n```\n".write(
            toFile: bad, atomically: true, encoding: .utf8)
        let failures = try compiler.check(try snippets(in: bad)[0], number: 0)
        guard failures.count == 2 else {
            throw Failure(message: "self-test: a snippet that cannot compile was not reported in both forms")
        }
        print("self-test: a broken snippet is reported in both forms")
    }

    var failures: [String] = []
    var count = 0
    for file in files {
        for snippet in try snippets(in: file) {
            count += 1
            failures += try compiler.check(snippet, number: count)
        }
    }
    for file in expectError {
        if let failure = try compiler.checkExpectedError(file) { failures.append(failure) }
    }
    for failure in failures { print(failure) }
    print(
        "\(count) snippets checked (code twice: as a main.swift and in a function; manifests loaded), \(expectError.count) files failed as they must; \(failures.count) failures"
    )
    if !failures.isEmpty { exit(1) }
}

do {
    try main()
} catch let failure as Failure {
    print("check-snippets: \(failure.message)")
    exit(2)
}
