#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// A POSIX signal.
public struct Signal: RawRepresentable, Hashable, Sendable, Codable, CustomStringConvertible {
    /// The signal number.
    public var rawValue: Int32

    /// Creates a signal from its number.
    public init(rawValue: Int32) { self.rawValue = rawValue }

    /// SIGTERM: ask a process to end. ``AnyChildProcess/terminate()`` sends it.
    public static let terminate = Signal(rawValue: SIGTERM)
    /// SIGKILL: end a process at once. ``AnyChildProcess/kill()`` sends it.
    public static let kill = Signal(rawValue: SIGKILL)
    /// SIGINT: the terminal's interrupt key.
    public static let interrupt = Signal(rawValue: SIGINT)
    /// SIGHUP.
    public static let hangup = Signal(rawValue: SIGHUP)
    /// SIGQUIT.
    public static let quit = Signal(rawValue: SIGQUIT)
    /// SIGABRT: `abort()`, failed preconditions and fatal errors in Swift.
    public static let abort = Signal(rawValue: SIGABRT)
    /// SIGSEGV: an invalid memory access.
    public static let segmentationFault = Signal(rawValue: SIGSEGV)
    /// SIGBUS.
    public static let busError = Signal(rawValue: SIGBUS)
    /// SIGILL: Swift's traps (overflow, force-unwrapping nil) on x86_64.
    public static let illegalInstruction = Signal(rawValue: SIGILL)
    /// SIGTRAP: Swift's traps on arm64.
    public static let trap = Signal(rawValue: SIGTRAP)
    /// SIGFPE.
    public static let floatingPointException = Signal(rawValue: SIGFPE)
    /// SIGUSR1.
    public static let user1 = Signal(rawValue: SIGUSR1)
    /// SIGUSR2.
    public static let user2 = Signal(rawValue: SIGUSR2)
    /// SIGALRM.
    public static let alarm = Signal(rawValue: SIGALRM)
    /// SIGPIPE.
    public static let brokenPipe = Signal(rawValue: SIGPIPE)

    /// The C name, such as `SIGKILL`.
    public var name: String {
        switch rawValue {
        case SIGTERM: "SIGTERM"
        case SIGKILL: "SIGKILL"
        case SIGINT: "SIGINT"
        case SIGHUP: "SIGHUP"
        case SIGQUIT: "SIGQUIT"
        case SIGABRT: "SIGABRT"
        case SIGSEGV: "SIGSEGV"
        case SIGBUS: "SIGBUS"
        case SIGILL: "SIGILL"
        case SIGTRAP: "SIGTRAP"
        case SIGFPE: "SIGFPE"
        case SIGUSR1: "SIGUSR1"
        case SIGUSR2: "SIGUSR2"
        case SIGALRM: "SIGALRM"
        case SIGPIPE: "SIGPIPE"
        case SIGCHLD: "SIGCHLD"
        case SIGCONT: "SIGCONT"
        case SIGSTOP: "SIGSTOP"
        case SIGXCPU: "SIGXCPU"
        default: "signal \(rawValue)"
        }
    }

    public var description: String { name }
}

/// How a child process ended.
public enum TerminationStatus: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The process exited with this code. A task that returned exits with 0,
    /// one that threw with 1.
    case exited(Int32)
    /// The process was ended by this signal.
    case signaled(Signal)
    /// The process ended, but how is not known: the fork server that started
    /// it died before it, and the kernel (before Linux 6.15) keeps a status
    /// only for the parent. Its ``exitCode`` is 255, as CPython reports then.
    case unknown

    /// Python's `exitcode`: the exit code, or the negated signal number.
    public var exitCode: Int32 {
        switch self {
        case .exited(let code): code
        case .signaled(let signal): -signal.rawValue
        case .unknown: 255
        }
    }

    /// Whether the process exited with code 0.
    public var isSuccess: Bool { self == .exited(0) }

    public var description: String {
        switch self {
        case .exited(let code): "exited with code \(code)"
        case .signaled(let signal): "killed by \(signal.name)"
        case .unknown: "ended with a status that is not known (the fork server that started it died first)"
        }
    }

    init(waitStatus status: Int32) {
        let signal = status & 0x7f
        if signal == 0 {
            self = .exited((status >> 8) & 0xff)
        } else {
            self = .signaled(Signal(rawValue: signal))
        }
    }
}
