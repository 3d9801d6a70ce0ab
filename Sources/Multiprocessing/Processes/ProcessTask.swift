/// Work that runs in another process, named by its type.
///
/// A child process cannot receive a closure from a spawned or fork-server
/// start, so work is a value: the task's type travels by its mangled name and
/// its stored properties in the wire format, and the child finds the type by
/// that name and calls ``run()``.
///
/// ```swift
/// struct Square: ProcessTask {
///     var number: Int
///     func run() -> Int { number * number }
/// }
///
/// let child = try ChildProcess(Square(number: 7))
/// try child.start()
/// try await child.join()
/// print(try child.value)   // 49
/// ```
///
/// `run()` may be synchronous or `async`, may throw, and returns a `Codable`
/// value or nothing (`Void`).
///
/// - Important: The type must be findable by name in the child: declare it
///   `internal` or `public`, at file scope or nested in such a type. `private`,
///   `fileprivate` and function-local types are refused in the parent with
///   ``MultiprocessingError`` code `.unresolvableTask`, before any process starts.
public protocol ProcessTask: Codable, Sendable {
    /// What ``run()`` returns: a `Codable` type, or `Void`.
    associatedtype Output: Sendable = Void

    /// Does the work, in the child process.
    func run() async throws -> Output

    /// Encodes a result for the trip to the parent. Provided for `Codable`
    /// outputs and for `Void`; do not implement it yourself.
    static func _encodeOutput(_ output: Output) throws -> [UInt8]
    /// Decodes a result in the parent. Provided like ``_encodeOutput(_:)``.
    static func _decodeOutput(_ bytes: [UInt8]) throws -> Output
}

extension ProcessTask where Output: Codable {
    public static func _encodeOutput(_ output: Output) throws -> [UInt8] { try WireEncoder().encode(output) }
    public static func _decodeOutput(_ bytes: [UInt8]) throws -> Output {
        try WireDecoder().decode(Output.self, from: bytes)
    }
}

extension ProcessTask {
    // Chosen only when neither of the other two applies: the compiler then
    // says what is wrong, instead of offering stubs for these requirements.
    @available(
        *, unavailable,
        message: "the type that run() returns must conform to Codable (or run() must return nothing): it travels back from the child process"
    )
    public static func _encodeOutput(_ output: Output) throws -> [UInt8] { fatalError("unavailable") }
    @available(
        *, unavailable,
        message: "the type that run() returns must conform to Codable (or run() must return nothing): it travels back from the child process"
    )
    public static func _decodeOutput(_ bytes: [UInt8]) throws -> Output { fatalError("unavailable") }
}

extension ProcessTask where Output == Void {
    public static func _encodeOutput(_ output: Output) throws -> [UInt8] { [] }
    public static func _decodeOutput(_ bytes: [UInt8]) throws -> Output { () }
}

/// How a task type is found again in a child.
enum TaskName {
    /// The name a child resolves, after checking in the parent that it can.
    static func resolvable<T>(_ type: T.Type) throws -> String {
        guard let name = _mangledTypeName(type) else {
            throw unresolvable(type, why: "it has no mangled name")
        }
        // Private, fileprivate and local types carry a `$` discriminator that
        // is tied to this process and cannot be looked up anywhere else.
        guard !name.contains("$"), _typeByName(name) == type else {
            throw unresolvable(type, why: "it is private, fileprivate or declared inside a function")
        }
        return name
    }

    private static func unresolvable<T>(_ type: T.Type, why: String) -> MultiprocessingError {
        MultiprocessingError(
            .unresolvableTask,
            "the task type '\(String(reflecting: type))' cannot be found by name in a child process: \(why). "
                + "Declare it internal or public, at file scope or nested in such a type, "
                + "or use the fork start method with a closure")
    }
}
