/// How a worker runs the items of one job, for one kind of work. The pool
/// sends the mangled name of a conforming type (``FunctionChunk``,
/// ``TaskChunk`` or ``ClosureChunk``, specialised for the user's type), and
/// the worker finds it by that name.
protocol PoolWork {
    /// Runs items `range` of the chunk whose inputs `payload` encodes, and
    /// hands their results to `publish`: once for the whole range, or once
    /// per item when `context.eachItem` is set.
    static func run(_ payload: ArraySlice<UInt8>, range: Range<Int>, context: WorkContext, publish: ResultSink)
        async throws
}

/// What a job runs with, besides its payload.
struct WorkContext {
    /// Where the worker records which item runs.
    var status: _ItemStatus
    /// Whether each item's result is sent as soon as it is done (with a
    /// task timeout: an item that then hangs loses only itself).
    var eachItem: Bool
    /// The descriptors that arrived with the job, for inputs that hold
    /// shared memory, queues, locks or connections.
    var transfer: DescriptorTransfer?

    /// A decoder of the job's inputs.
    var decoder: WireDecoder {
        var decoder = WireDecoder()
        if let transfer { decoder.userInfo[.descriptorTransfer] = transfer }
        return decoder
    }
}

/// Sends the result of items `range`: `encode` appends the payload (of the
/// given kind) behind the message header already in the buffer.
typealias ResultSink = (Range<Int>, PoolMessage.ResultKind, (inout [UInt8]) throws -> Void) throws -> Void

/// Sends a failure that every item of `range` shares (inputs that do not
/// decode, a work type that cannot be found).
func publishFailure(_ error: any Error, _ range: Range<Int>, _ publish: ResultSink) throws {
    try publish(range, .failed) { buffer in
        try WireEncoder().encode(ErrorEnvelope(error, processName: ProcessIdentity.current.name), into: &buffer)
    }
}

/// Decodes a job's inputs and checks that they hold its range.
func decodeInputs<Input: Decodable>(
    _ type: Input.Type, _ payload: ArraySlice<UInt8>, range: Range<Int>, context: WorkContext
) throws -> [Input] {
    let inputs = try payload.withUnsafeBytes { try context.decoder.decode([Input].self, from: $0) }
    guard range.upperBound <= inputs.count else {
        throw MultiprocessingError(
            .decodingFailed, "a work message names items \(range) of a chunk of \(inputs.count) inputs")
    }
    return inputs
}

/// Runs a function's items: all at once through `callAll` (specialised for
/// the function), or one at a time; sends all outputs in one message when
/// every item succeeded, otherwise one outcome per item (the items after a
/// failure still run).
func runFunctionItems<Input, Output: Encodable>(
    _ inputs: [Input], range: Range<Int>, context: WorkContext, publish: ResultSink,
    callAll: ([Input], Range<Int>, _ItemStatus) async -> _ChunkOutputs<Output>,
    call: (Input) async throws -> Output
) async throws {
    let pieces = context.eachItem ? range.map { $0..<$0 + 1 } : [range]
    for piece in pieces {
        let chunk = await callAll(inputs, piece, context.status)
        guard let failedAt = chunk.failedIndex else {
            try publish(piece, .values) { try WireEncoder().encode(chunk.outputs, into: &$0) }
            continue
        }
        var outcomes = chunk.outputs.map { Outcome.encoding($0) }
        outcomes.append(.failure(ErrorEnvelope(chunk.error!, processName: ProcessIdentity.current.name)))
        for index in (failedAt + 1)..<piece.upperBound {
            context.status.started(index)
            do {
                outcomes.append(.encoding(try await call(inputs[index])))
            } catch {
                outcomes.append(.failure(ErrorEnvelope(error, processName: ProcessIdentity.current.name)))
            }
        }
        try publish(piece, .outcomes) { try WireEncoder().encode(outcomes, into: &$0) }
    }
}

/// A chunk of inputs of a ``ProcessFunction``.
enum FunctionChunk<F: ProcessFunction>: PoolWork {
    static func run(_ payload: ArraySlice<UInt8>, range: Range<Int>, context: WorkContext, publish: ResultSink)
        async throws
    {
        let inputs: [F.Input]
        do {
            inputs = try decodeInputs(F.Input.self, payload, range: range, context: context)
        } catch {
            return try publishFailure(error, range, publish)
        }
        try await runFunctionItems(
            inputs, range: range, context: context, publish: publish, callAll: F._callChunk, call: F.call)
    }
}

/// A chunk of ``ProcessTask`` values.
enum TaskChunk<T: ProcessTask>: PoolWork {
    static func run(_ payload: ArraySlice<UInt8>, range: Range<Int>, context: WorkContext, publish: ResultSink)
        async throws
    {
        let tasks: [T]
        do {
            tasks = try decodeInputs(T.self, payload, range: range, context: context)
        } catch {
            return try publishFailure(error, range, publish)
        }
        let pieces = context.eachItem ? range.map { $0..<$0 + 1 } : [range]
        for piece in pieces {
            var outcomes: [Outcome] = []
            outcomes.reserveCapacity(piece.count)
            for index in piece {
                context.status.started(index)
                outcomes.append(await ChildRuntime.perform(tasks[index]).0)
            }
            try publish(piece, .outcomes) { try WireEncoder().encode(outcomes, into: &$0) }
        }
    }
}

/// The chunk kind of every ``ForkingPool``: its worker runs the closure the zygote was made with.
enum ClosureChunk: PoolWork {
    /// Set in the zygote before it serves, so every worker forked from it has it.
    nonisolated(unsafe) static var body:
        (@Sendable (ArraySlice<UInt8>, Range<Int>, WorkContext, ResultSink) async throws -> Void)?

    static func run(_ payload: ArraySlice<UInt8>, range: Range<Int>, context: WorkContext, publish: ResultSink)
        async throws
    {
        guard let body else {
            let error = MultiprocessingError(.unresolvableTask, "this worker was not forked from a pool's zygote")
            return try publishFailure(error, range, publish)
        }
        try await body(payload, range, context, publish)
    }

    /// The body a ``ForkingPool`` of `closure` installs in its zygote.
    static func body<Input: Decodable & Sendable, Output: Encodable & Sendable>(
        for closure: @escaping @Sendable (Input) async throws -> Output
    ) -> @Sendable (ArraySlice<UInt8>, Range<Int>, WorkContext, ResultSink) async throws -> Void {
        { payload, range, context, publish in
            let inputs: [Input]
            do {
                inputs = try decodeInputs(Input.self, payload, range: range, context: context)
            } catch {
                return try publishFailure(error, range, publish)
            }
            try await runFunctionItems(
                inputs, range: range, context: context, publish: publish,
                callAll: { inputs, range, status in await _callEach(inputs, range, status, closure) }, call: closure)
        }
    }
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
