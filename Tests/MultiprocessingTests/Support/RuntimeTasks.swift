#if canImport(Glibc)
    import Glibc
#endif
import Multiprocessing

/// Crashes in one of the ways a user's code does, in a function whose name
/// the crash report must show.
struct CrashInFunction: ProcessTask {
    enum Way: String, Codable, CaseIterable { case raiseSegv, nullDereference, fatalError, indexOutOfRange }
    var way: Way

    func run() -> Int {
        switch way {
        case .raiseSegv: return crashByRaisingSIGSEGV()
        case .nullDereference: return crashByNullDereference()
        case .fatalError: return crashByFatalError()
        case .indexOutOfRange: return crashByIndexOutOfRange(7)
        }
    }

    /// The signal the way ends a process with.
    var signal: Signal {
        switch way {
        case .raiseSegv, .nullDereference: return .segmentationFault
        #if arch(x86_64)
            case .fatalError, .indexOutOfRange: return .illegalInstruction
        #else
            case .fatalError, .indexOutOfRange: return .trap
        #endif
        }
    }

    /// The function the report must name.
    var function: String {
        switch way {
        case .raiseSegv: "crashByRaisingSIGSEGV"
        case .nullDereference: "crashByNullDereference"
        case .fatalError: "crashByFatalError"
        case .indexOutOfRange: "crashByIndexOutOfRange"
        }
    }
}

@inline(never)
func crashByRaisingSIGSEGV() -> Int {
    raise(SIGSEGV)
    // Under Swift's backtracer raise returned, and the task succeeded.
    return 1
}

@inline(never)
func crashByNullDereference() -> Int {
    // Zero, without the compiler knowing it.
    let address = Int(getpid() >> 30)
    return unsafeBitCast(address, to: UnsafeMutablePointer<Int>.self).pointee
}

@inline(never)
func crashByFatalError() -> Int {
    fatalError("the task gave up")
}

@inline(never)
func crashByIndexOutOfRange(_ index: Int) -> Int {
    let numbers = [1, 2, 3]
    return numbers[index]
}

/// Throws a plain error, which the child prints unless told not to.
struct ThrowsForStderr: ProcessTask {
    struct Refusal: Error, CustomStringConvertible {
        var description: String { "the input was refused" }
    }
    func run() throws { throw Refusal() }
}

/// Returns the pid of the process that runs it.
struct ReportPID: ProcessTask {
    func run() -> Int32 { getpid() }
}

/// Says which start method started the process that runs it.
struct ReportStartMethod: ProcessTask {
    func run() -> String { StartMethod.current?.description ?? "none" }
}

/// What a child sees of its parent: its pid, whether it runs, and a short wait for its end.
struct InspectParent: ProcessTask {
    func run() -> [String] {
        guard let parent = parentProcess else { return ["no parent"] }
        return ["\(parent.pid)", parent.name, "\(parent.isAlive)", "\(parent.join(timeout: .milliseconds(100)))"]
    }
}
