#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import CMultiprocessing

/// The crash reports of children: written by the C handler of `runtime.c` in
/// the child, read and given function names here in the parent.
///
/// A child started by the library runs without Swift's backtracer (which
/// takes hundreds of milliseconds per crash, prints about 50 lines on the
/// terminal and lets `raise(SIGSEGV)` return) unless `SWIFT_BACKTRACE` is set
/// in the parent's environment. Its own handler writes the signal, the
/// faulting address and the frames as offsets into the executable; the
/// parent, which runs the same executable, names them from its symbol table.
enum CrashReport {
    /// Whether children get the library's crash handler: unless the user
    /// asked for Swift's backtracer by setting `SWIFT_BACKTRACE`.
    static var wantedForChildren: Bool { getenv("SWIFT_BACKTRACE") == nil }

    /// In a child: catch crashes and write their report to `fd`.
    static func install(fd: Int32, name: String) {
        guard mp_boot_crash_reports() != 0 || wantedForChildren else { return }
        mp_install_crash_handler(fd, name)
    }

    /// The longest report kept: the first frames are what tells where.
    static let maximumBytes = 16 * 1024

    /// The report a crashed child wrote at the start of its result file, with
    /// its frames named; `nil` if it wrote none.
    static func read(from fd: Int32) -> String? {
        var bytes = [UInt8](repeating: 0, count: maximumBytes)
        let count = bytes.withUnsafeMutableBytes { Platform.readFromStart(fd, into: $0) }
        let magic = Array(MP_CRASH_MAGIC.utf8)
        guard count > magic.count, bytes.starts(with: magic) else { return nil }
        let text = String(decoding: bytes[magic.count..<count], as: UTF8.self)
        var lines = text.split(separator: "\n", omittingEmptySubsequences: true).map(String.init)
        guard !lines.isEmpty else { return nil }
        for index in 1..<lines.count {
            lines[index] = "#\(index - 1) " + symbolicated(lines[index])
        }
        return lines.joined(separator: "\n")
    }

    /// A line of `backtrace_symbols_fd`, `path(symbol+0xoff) [0xaddr]` or
    /// `path(+0xoff) [0xaddr]`, as `function + offset (file)`: the executable's
    /// frames named from its symbol table, the others demangled.
    static func symbolicated(_ line: String) -> String {
        guard let open = line.firstIndex(of: "("), let close = line[open...].firstIndex(of: ")") else {
            return line
        }
        let path = String(line[..<open])
        // The C library names the executable by its first argument, which is
        // the child's title ("myapp: child Square") by then.
        let program = String(cString: mp_program_name())
        let retitled = path.hasPrefix(program + ": ")
        let file = retitled ? program : path.split(separator: "/").last.map(String.init) ?? path
        let inside = line[line.index(after: open)..<close]
        guard let plus = inside.lastIndex(of: "+"),
            let offset = UInt64(inside[inside.index(after: plus)...].dropFirst(2), radix: 16)
        else { return line }
        let symbol = String(inside[..<plus])
        if !symbol.isEmpty { return "\(demangled(symbol)) + \(offset) (\(file))" }
        var start: UInt64 = 0
        // A return address: the call is the byte before it (the last
        // instruction of a function that never returns, such as one that
        // calls fatalError, is followed by the next function).
        if retitled || isOwnExecutable(path), offset > 0, let name = mp_function_at_offset(offset - 1, &start) {
            return "\(demangled(String(cString: name))) + \(offset - start) (\(file))"
        }
        return line
    }

    private static func isOwnExecutable(_ path: String) -> Bool {
        var mine = stat()
        var theirs = stat()
        guard stat("/proc/self/exe", &mine) == 0, stat(path, &theirs) == 0 else { return false }
        return mine.st_dev == theirs.st_dev && mine.st_ino == theirs.st_ino
    }

    /// A Swift symbol demangled (`Module.function(_:) -> Int`); other names unchanged.
    static func demangled(_ symbol: String) -> String {
        guard symbol.hasPrefix("$s") || symbol.hasPrefix("_T") else { return symbol }
        return symbol.withCString { mangled in
            guard let result = _swiftDemangle(mangled, strlen(mangled), nil, nil, 0) else { return symbol }
            defer { free(result) }
            return String(cString: result)
        }
    }
}

@_silgen_name("swift_demangle")
private func _swiftDemangle(
    _ mangledName: UnsafePointer<CChar>, _ mangledNameLength: Int, _ outputBuffer: UnsafeMutablePointer<CChar>?,
    _ outputBufferSize: UnsafeMutablePointer<Int>?, _ flags: UInt32
) -> UnsafeMutablePointer<CChar>?
