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
        let inputs: [F.Input]
        do {
            inputs = try payload.withUnsafeBytes { try WireDecoder().decode([F.Input].self, from: $0) }
        } catch {
            return failure(error)
        }
        let chunk = await F._callChunk(inputs)
        if let failedAt = chunk.failedIndex {
            return await mixed(inputs: inputs, outputs: chunk.outputs, failedAt: failedAt, error: chunk.error!)
        }
        do {
            return (ChunkResultKind.values, try WireEncoder().encode(chunk.outputs))
        } catch {
            return failure(error)
        }
    }

    /// Once an item failed, the rest of the chunk still runs, and every item gets its own outcome.
    private static func mixed(
        inputs: [F.Input], outputs: [F.Output], failedAt: Int, error: any Error
    ) async -> (kind: UInt8, payload: [UInt8]) {
        var outcomes = outputs.map { Outcome.encoding($0) }
        outcomes.append(.failure(ErrorEnvelope(error, processName: ProcessIdentity.current.name)))
        for input in inputs[(failedAt + 1)...] {
            do {
                outcomes.append(.encoding(try await F.call(input)))
            } catch {
                outcomes.append(.failure(ErrorEnvelope(error, processName: ProcessIdentity.current.name)))
            }
        }
        return encodeOutcomes(outcomes)
    }

    private static func failure(_ error: any Error) -> (kind: UInt8, payload: [UInt8]) {
        encodeOutcomes([.failure(ErrorEnvelope(error, processName: ProcessIdentity.current.name))])
    }
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
