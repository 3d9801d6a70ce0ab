/// Decodes `Decodable` values from the bytes ``WireEncoder`` writes.
///
/// The format carries no type information, so the type passed to `decode`
/// must be the type that was encoded. Input is treated as untrusted: bytes
/// that are truncated, corrupt or describe another type throw instead of
/// crashing, no length or count read from the input is allocated before
/// the bytes it claims are known to be there, nesting is limited to 512
/// levels, and bytes left over after the value are an error.
///
/// Keys of keyed containers are matched by name, so a hand-written
/// `init(from:)` may decode keys in any order and use `contains` and
/// `allKeys`; decoding them in the order they were encoded is fastest.
/// An unkeyed container that is an element of an array or of another
/// unkeyed container must be decoded to its end, because elements carry no
/// length from which its end could be found.
public struct WireDecoder: Sendable {
    /// Context values visible to `Decodable` implementations through `decoder.userInfo`.
    ///
    /// Values must be `Sendable` so the decoder can be shared between tasks;
    /// `init(from:)` sees them as `[CodingUserInfoKey: Any]`.
    public var userInfo: [CodingUserInfoKey: any Sendable] = [:]

    /// Creates a decoder with an empty ``userInfo``.
    ///
    /// A decoder holds no state between calls, so one can be reused and shared freely.
    public init() {}

    /// Decodes a value of the given type from a byte array.
    ///
    /// - Parameters:
    ///   - type: The type that was encoded.
    ///   - bytes: One complete message written by ``WireEncoder``.
    /// - Returns: The decoded value.
    /// - Throws: ``MultiprocessingError`` with code `decodingFailed` when the
    ///   bytes are not a valid encoding of `type`, including when bytes are
    ///   left over; the message names the coding path where decoding failed.
    ///   Errors of other types thrown by an `init(from:)` pass through unchanged.
    public func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8]) throws -> T {
        try bytes.withUnsafeBytes { try decode(type, from: $0) }
    }

    /// Decodes a value of the given type from raw memory, without copying it first.
    ///
    /// The memory is read only during the call; nothing keeps a pointer to it.
    ///
    /// - Parameters:
    ///   - type: The type that was encoded.
    ///   - bytes: One complete message written by ``WireEncoder``.
    /// - Returns: The decoded value.
    /// - Throws: ``MultiprocessingError`` with code `decodingFailed` when the
    ///   bytes are not a valid encoding of `type`; errors of other types thrown
    ///   by an `init(from:)` pass through unchanged.
    public func decode<T: Decodable>(_ type: T.Type, from bytes: UnsafeRawBufferPointer) throws -> T {
        if let kind = WireFastPath.scalar(T.self) {
            if let bits = WireFastPath.scalarBits(kind, from: bytes) { return WirePrimitive.value(bits, as: T.self) }
        } else if let kind = WireTrivialArrays.kind(of: T.self), let layout = WireTrivialArrays.layout(kind, of: bytes)
        {
            return WireTrivialArrays.array(kind, layout, from: bytes, as: T.self)
        }
        let state: WireDecodingState
        do {
            state = try WireDecodingState(bytes: bytes, userInfo: userInfo)
        } catch {
            throw MultiprocessingError(.decodingFailed, "invalid message: \(error.message)")
        }
        // A decoder or container that escaped `init(from:)` must not read the memory later.
        defer { state.isActive = false }
        do {
            var position = 0
            return try state.decodeValue(
                T.self, at: &position, limit: state.bodyEnd, exact: true, parent: -1, key: .none, collapsed: false)
        } catch {
            throw MultiprocessingError.wireWrappingCodingError(error, .decodingFailed)
        }
    }
}
