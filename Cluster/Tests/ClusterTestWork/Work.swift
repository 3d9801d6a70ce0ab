#if canImport(Glibc)
    import Glibc
#endif
import Multiprocessing

/// The square of its input.
public enum Square: ProcessFunction {
    public static func call(_ input: Int) -> Int { input * input }
}

/// Its input after `input.sleep` milliseconds, with the pid of the node
/// that ran it (a worker's environment names its node).
public struct SlowItem: Codable, Sendable {
    public var value: Int
    public var milliseconds: Int
    public init(value: Int, milliseconds: Int) {
        self.value = value
        self.milliseconds = milliseconds
    }
}

public enum Slow: ProcessFunction {
    public static func call(_ input: SlowItem) -> Ran {
        usleep(UInt32(input.milliseconds * 1000))
        return Ran(value: input.value, node: nodePID)
    }
}

/// What a test item returns: its value and the node that ran it.
public struct Ran: Codable, Sendable, Hashable {
    public var value: Int
    public var node: Int32
}

/// The pid of the node this worker belongs to (the test node puts it in its environment).
public var nodePID: Int32 {
    Int32(getenv("CLUSTER_TEST_NODE_PID").map { String(cString: $0) } ?? "") ?? -1
}

/// Kills the node running it (SIGKILL) on the input -1; returns the input otherwise.
public enum KillNodeOnMinusOne: ProcessFunction {
    public static func call(_ input: Int) -> Int {
        if input == -1 {
            let node = nodePID
            if node > 0 { kill(node, SIGKILL) }
            while true { usleep(10_000) }
        }
        return input
    }
}

/// Sleeps forever on a negative input (for timeouts); returns the input otherwise.
public enum HangOnNegative: ProcessFunction {
    public static func call(_ input: Int) -> Int {
        if input < 0 { while true { usleep(10_000) } }
        return input
    }
}

/// A task value: adds its numbers, with the node that ran it.
public struct AddTask: ProcessTask {
    public var a: Int
    public var b: Int
    public init(a: Int, b: Int) {
        self.a = a
        self.b = b
    }
    public func run() async throws -> Ran { Ran(value: a + b, node: nodePID) }
}

/// A task that sleeps `milliseconds` and then returns its node.
public struct SleepTask: ProcessTask {
    public var milliseconds: Int
    public init(milliseconds: Int) { self.milliseconds = milliseconds }
    public func run() async throws -> Int32 {
        usleep(UInt32(milliseconds * 1000))
        return nodePID
    }
}
