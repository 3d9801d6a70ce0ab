/// An error thrown in a child process whose type could not travel as itself.
///
/// Errors that are `Codable` (and findable by name, like task types) arrive in
/// the parent as their own type, so `catch let error as MyError` works across
/// the process boundary. Any other error arrives as a `RemoteError` carrying
/// its type's name and its description.
public struct RemoteError: Error, Hashable, Sendable, Codable, CustomStringConvertible {
    /// The fully qualified name of the error's type in the child, such as `MyApp.ParseError`.
    public var typeName: String
    /// The error's `String(describing:)` in the child.
    public var errorDescription: String
    /// The name of the process that threw it.
    public var processName: String

    public var description: String {
        "\(typeName) in process '\(processName)': \(errorDescription)"
    }
}

/// What a child sends back: the task's encoded result or the error it threw.
enum Outcome: Codable, Sendable {
    case success([UInt8])
    case failure(ErrorEnvelope)

    /// The message a child sends its parent: `0` and the result's bytes, or
    /// `1` and the wire encoding of the error. Built by hand so that a child
    /// whose task returned touches no more code than it must: a forked child
    /// pays a page fault for every page of code it runs for the first time.
    func append(to buffer: inout [UInt8]) throws {
        switch self {
        case .success(let bytes):
            buffer.append(0)
            buffer += bytes
        case .failure(let envelope):
            buffer.append(1)
            try WireEncoder().encode(envelope, into: &buffer)
        }
    }

    init(message: [UInt8]) throws {
        guard let tag = message.first else {
            throw MultiprocessingError(.decodingFailed, "an empty outcome message")
        }
        switch tag {
        case 0: self = .success(Array(message[1...]))
        case 1: self = .failure(try WireDecoder().decode(ErrorEnvelope.self, from: Array(message[1...])))
        default: throw MultiprocessingError(.decodingFailed, "an outcome message with tag \(tag)")
        }
    }
}

/// An error on its way to the parent.
struct ErrorEnvelope: Codable, Sendable {
    var typeName: String
    var description: String
    var processName: String
    /// The mangled name and wire encoding of a `Codable` error.
    var mangledName: String?
    var payload: [UInt8]?

    init(_ error: any Error, processName: String) {
        typeName = String(reflecting: type(of: error))
        description = String(describing: error)
        self.processName = processName
        if let encodable = error as? any Encodable,
            let name = _mangledTypeName(type(of: error)), !name.contains("$"),
            let bytes = try? WireEncoder().encode(encodable)
        {
            mangledName = name
            payload = bytes
        }
    }

    /// The error as its own type when it can be rebuilt, else a ``RemoteError``.
    var error: any Error {
        if let mangledName, let payload,
            let type = _typeByName(mangledName) as? any (Error & Decodable).Type,
            let error = try? WireDecoder().decode(type, from: payload)
        {
            return error
        }
        return RemoteError(typeName: typeName, errorDescription: description, processName: processName)
    }
}
