/// Encodes `Encodable` values into the library's compact binary wire format.
///
/// The wire format plays the role pickle plays in Python: it is how task
/// arguments, results and channel messages cross between processes. It is
/// schema-less and carries no type information, so bytes decode only with
/// ``WireDecoder`` into the same type that was encoded. Keys of keyed
/// containers are written once per message in a table and referenced by
/// index, so hand-written `init(from:)` implementations may decode keys in
/// any order, test them with `contains`, and list them with `allKeys`.
///
/// Arrays of fixed-width numbers, `[UInt8]` and `String` are copied in bulk
/// wherever they appear, at the top level or inside other values.
///
/// Values may nest at most 512 levels deep. A nested container or super
/// encoder must be filled before its parent container encodes its next
/// value; using it afterwards throws.
///
/// ```swift
/// let bytes = try WireEncoder().encode(order)
/// let copy = try WireDecoder().decode(Order.self, from: bytes)
/// ```
public struct WireEncoder: Sendable {
    /// Context values visible to `Encodable` implementations through `encoder.userInfo`.
    ///
    /// Values must be `Sendable` so the encoder can be shared between tasks;
    /// `encode(to:)` sees them as `[CodingUserInfoKey: Any]`.
    public var userInfo: [CodingUserInfoKey: any Sendable] = [:]

    /// Creates an encoder with an empty ``userInfo``.
    ///
    /// An encoder holds no state between calls, so one can be reused and shared freely.
    public init() {}

    /// Encodes a value into a new byte array.
    ///
    /// - Parameters:
    ///   - value: The value to encode.
    /// - Returns: The encoded message.
    /// - Throws: ``MultiprocessingError`` with code `encodingFailed` when the
    ///   value cannot be encoded (nesting too deep, a container used after it
    ///   was closed, an `EncodingError` from the value's `encode(to:)`); other
    ///   errors thrown by `encode(to:)` pass through unchanged.
    public func encode<T: Encodable>(_ value: T) throws -> [UInt8] {
        var bytes: [UInt8] = []
        try encode(value, into: &bytes)
        return bytes
    }

    /// Appends the encoding of a value to an existing buffer.
    ///
    /// This is the hot path for senders that reuse one buffer per message: it
    /// avoids allocating a new array. On failure the buffer is left as it was.
    ///
    /// - Parameters:
    ///   - value: The value to encode.
    ///   - buffer: The buffer the encoded message is appended to.
    /// - Throws: ``MultiprocessingError`` with code `encodingFailed` when the
    ///   value cannot be encoded; other errors thrown by the value's
    ///   `encode(to:)` pass through unchanged.
    public func encode<T: Encodable>(_ value: T, into buffer: inout [UInt8]) throws {
        if WireFastPath.append(value, to: &buffer) { return }
        let state = WireEncodingState(userInfo: userInfo)
        swap(&state.buffer, &buffer)
        defer { swap(&state.buffer, &buffer) }
        let start = state.buffer.count
        do {
            _ = try state.encodeValue(value, parent: -1, key: .none, collapsingOptional: false)
            if let error = state.deferredError {
                throw error
            }
            state.appendKeyTable()
        } catch {
            state.buffer.removeSubrange(start...)
            throw MultiprocessingError.wireWrappingCodingError(error, .encodingFailed)
        }
    }
}
