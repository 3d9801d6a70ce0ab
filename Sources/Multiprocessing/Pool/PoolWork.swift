/// How a worker runs one chunk of one kind of work. The pool sends the
/// mangled name of a conforming type (``FunctionChunk`` or ``TaskChunk``
/// specialised for the user's type), and the worker finds it by that name.
protocol PoolWork {
    /// Runs every item of the chunk; returns the result kind and payload.
    static func runChunk(_ payload: ArraySlice<UInt8>) async -> (kind: UInt8, payload: [UInt8])
}

enum ChunkResultKind {
    /// The payload is the wire encoding of `[Output]`, one per input.
    static let values: UInt8 = 0
    /// The payload is the wire encoding of `[Outcome]`, one per input.
    static let outcomes: UInt8 = 1
}

/// A chunk of inputs of a ``ProcessFunction``.
enum FunctionChunk<F: ProcessFunction>: PoolWork {
    static func runChunk(_ payload: ArraySlice<UInt8>) async -> (kind: UInt8, payload: [UInt8]) {
        await runValueChunk(payload, callAll: F._callChunk, call: F.call)
    }
}

/// Decodes a chunk of inputs, runs them with `callAll`, and encodes all the
/// outputs at once; after a failure, the rest of the chunk still runs (with
/// `call`) and every item gets its own outcome.
func runValueChunk<Input: Decodable, Output: Encodable>(
    _ payload: ArraySlice<UInt8>, callAll: ([Input]) async -> _ChunkOutputs<Output>,
    call: (Input) async throws -> Output
) async -> (kind: UInt8, payload: [UInt8]) {
    var processName: String { ProcessIdentity.current.name }
    let inputs: [Input]
    do {
        inputs = try payload.withUnsafeBytes { try WireDecoder().decode([Input].self, from: $0) }
    } catch {
        return encodeOutcomes([.failure(ErrorEnvelope(error, processName: processName))])
    }
    let chunk = await callAll(inputs)
    guard let failedAt = chunk.failedIndex else {
        do {
            return (ChunkResultKind.values, try WireEncoder().encode(chunk.outputs))
        } catch {
            return encodeOutcomes([.failure(ErrorEnvelope(error, processName: processName))])
        }
    }
    var outcomes = chunk.outputs.map { Outcome.encoding($0) }
    outcomes.append(.failure(ErrorEnvelope(chunk.error!, processName: processName)))
    for input in inputs[(failedAt + 1)...] {
        do {
            outcomes.append(.encoding(try await call(input)))
        } catch {
            outcomes.append(.failure(ErrorEnvelope(error, processName: processName)))
        }
    }
    return encodeOutcomes(outcomes)
}

/// A chunk of ``ProcessTask`` values.
enum TaskChunk<T: ProcessTask>: PoolWork {
    static func runChunk(_ payload: ArraySlice<UInt8>) async -> (kind: UInt8, payload: [UInt8]) {
        let tasks: [T]
        do {
            tasks = try payload.withUnsafeBytes { try WireDecoder().decode([T].self, from: $0) }
        } catch {
            return encodeOutcomes([.failure(ErrorEnvelope(error, processName: ProcessIdentity.current.name))])
        }
        var outcomes: [Outcome] = []
        outcomes.reserveCapacity(tasks.count)
        for task in tasks {
            outcomes.append(await ChildRuntime.perform(task).0)
        }
        return encodeOutcomes(outcomes)
    }
}

func encodeOutcomes(_ outcomes: [Outcome]) -> (kind: UInt8, payload: [UInt8]) {
    (ChunkResultKind.outcomes, (try? WireEncoder().encode(outcomes)) ?? [])
}

extension Outcome {
    static func encoding<T: Encodable>(_ value: T) -> Outcome {
        do {
            return .success(try WireEncoder().encode(value))
        } catch {
            return .failure(ErrorEnvelope(error, processName: ProcessIdentity.current.name))
        }
    }
}
