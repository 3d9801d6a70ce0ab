#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import Multiprocessing

/// A way a worker dies, and the status the parent must report for it.
enum Death: String, Codable, CaseIterable, Sendable {
    case sigkill
    case segvRaise = "segv-raise"
    case segvNull = "segv-null"
    case abort
    case fatalError = "fatal-error"
    case exit3 = "exit-3"

    var expectedStatus: TerminationStatus {
        switch self {
        case .sigkill: .signaled(.kill)
        case .segvRaise, .segvNull: .signaled(.segmentationFault)
        case .abort: .signaled(.abort)
        #if arch(x86_64)
            case .fatalError: .signaled(.illegalInstruction)
        #else
            case .fatalError: .signaled(.trap)
        #endif
        case .exit3: .exited(3)
        }
    }

    /// Dies; `address` is a null page address the optimizer cannot see (8).
    func happen(address: Int) {
        switch self {
        case .sigkill: raise(SIGKILL)
        case .segvRaise: raise(SIGSEGV)
        case .segvNull: UnsafeMutablePointer<Int>(bitPattern: address)!.pointee = 1
        case .abort: Glibc.abort()
        case .fatalError: Swift.fatalError("the chaos program's fatalError")
        case .exit3: exit(3)
        }
    }
}

/// Dies the way it is told, in a worker or a child.
struct Die: ProcessTask {
    var death: Death
    var address = 8
    func run() { death.happen(address: address) }
}

/// A task that never finishes by itself.
enum Hang: String, Codable, CaseIterable, Sendable {
    case sleep
    case spin
    case ignoreTerm = "ignore-term"

    func happen() {
        switch self {
        case .sleep:
            while true { Glibc.sleep(1000) }
        case .spin:
            // time() is a call the optimizer must keep, so the loop really spins.
            while time(nil) != 0 {}
        case .ignoreTerm:
            signal(SIGTERM, SIG_IGN)
            while true { pause() }
        }
    }
}

struct HangForever: ProcessTask {
    var hang: Hang
    func run() -> Int {
        hang.happen()
        return 0
    }
}

/// Short work that keeps a pool busy while another item hangs.
struct Nap: ProcessTask {
    var milliseconds: Int
    func run() -> Int {
        usleep(useconds_t(milliseconds * 1000))
        return milliseconds
    }
}

/// Returns the length of what it carries (a task with a payload, for leak counts).
struct Measure: ProcessTask {
    var payload: [UInt8]
    func run() -> Int { payload.count }
}

struct Twice: ProcessFunction {
    static func call(_ input: Int) -> Int { input * 2 }
}

/// Returns its parent's pid: for a fork-server worker, the fork server.
struct ParentPID: ProcessTask {
    func run() -> Int32 { getppid() }
}

/// Does nothing, for child starts.
struct Nothing: ProcessTask {
    func run() {}
}

/// Receives from a connection until it fails, and says how.
struct ReceiveGarbage: ProcessTask {
    var connection: Connection
    func run() -> Observed {
        var messages = 0
        while true {
            do {
                _ = try connection.receiveBytes()
                messages += 1
            } catch let error as MultiprocessingError {
                return Observed(code: error.code.description, note: "after \(messages) messages: \(error.message)")
            } catch {
                return Observed(code: nil, note: "an untyped error: \(error)")
            }
        }
    }
}

/// What a trial saw: the error code (nil for success), the status, and a note.
struct Observed: Codable, Sendable, CustomStringConvertible {
    var code: String?
    var status: TerminationStatus?
    var note = ""
    var seconds = 0.0

    var description: String {
        "\(code ?? "success")\(status.map { ", \($0)" } ?? "")\(note.isEmpty ? "" : " (\(note))")"
            + " after \(Int((seconds * 1000).rounded())) ms"
    }

    init(code: String?, status: TerminationStatus? = nil, note: String = "") {
        self.code = code
        self.status = status
        self.note = note
    }

    init(_ error: any Error) {
        if let error = error as? MultiprocessingError {
            self.init(code: error.code.description, status: error.terminationStatus, note: error.message)
        } else {
            self.init(code: "\(type(of: error))", note: "\(error)")
        }
    }
}
