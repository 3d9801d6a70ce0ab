#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import CMultiprocessing
import Logging

/// What the engine thread does with what comes back from workers: results,
/// exits and items that overstay their timeout. Every method runs with the
/// engine's lock held.
extension PoolEngine {
    /// Reads what the results pipe holds: control messages are handled,
    /// large results wait for their markers (taken by ``takeResults(_:)``,
    /// which the caller runs next), doorbells only woke the engine.
    func readPipe(_ slot: WorkerSlot) {
        repeat {
            let frame: [UInt8]
            do {
                frame = try slot.results.receiveFrame()
            } catch {
                return  // the worker is exiting; its exit descriptor reports it
            }
            do {
                switch try PoolMessage.parseToPool(frame) {
                case .doorbell: continue
                case .result: slot.pipeResults.append(frame)
                case .ready(let failure): workerReady(slot, failure: failure)
                case .retiring:
                    slot.retiring = true
                    slot.state = .stopping
                case .onPipe: throw MultiprocessingError(.decodingFailed, "an on-pipe marker on the pipe")
                }
            } catch {
                return distrust(slot)
            }
        } while slot.results.hasBufferedMessage
    }

    /// Handles the worker's results in the order it sent them: the ring's
    /// records, and at each marker the next result from the pipe.
    func takeResults(_ slot: WorkerSlot) {
        while true {
            if slot.awaitingPipe > 0 {
                guard !slot.pipeResults.isEmpty else { return }
                slot.awaitingPipe -= 1
                handleResult(slot.pipeResults.removeFirst(), from: slot)
                continue
            }
            let record: [UInt8]
            do {
                guard let next = try slot.ring.take() else { return }
                record = next
            } catch {
                return distrust(slot)
            }
            if record == PoolMessage.onPipe {
                slot.awaitingPipe += 1
            } else {
                handleResult(record, from: slot)
            }
        }
    }

    /// A worker that breaks the protocol is not trusted further: it is killed
    /// (and replaced), and what it held runs elsewhere.
    private func distrust(_ slot: WorkerSlot) {
        stop(slot, now: true)
    }

    private func workerReady(_ slot: WorkerSlot, failure: ArraySlice<UInt8>?) {
        if slot.state == .starting { slot.state = .running }
        guard let failure else { return }
        let envelope = try? WireDecoder().decode(ErrorEnvelope.self, from: Array(failure))
        let cause = envelope.map { "\($0.error)" } ?? "an error that could not be decoded"
        var error = MultiprocessingError(
            .initializerFailed, "the pool's worker initializer failed in worker \(slot.index): \(cause)")
        log(.error, "the pool's worker initializer failed; the pool is broken", slot, ["error": "\(cause)"])
        error.workerIndex = slot.index
        error.pid = slot.process.pid
        broken = error
        if phase == .accepting { phase = .closed }
        failPending(error)
        for other in slots { stop(other, now: true) }
    }

    private func handleResult(_ message: [UInt8], from slot: WorkerSlot) {
        guard case .result(let result, let payload)? = try? PoolMessage.parseToPool(message),
            let head = slot.inFlight.first, head.id == result.id, result.range.lowerBound == head.next,
            result.range.upperBound <= head.range.upperBound, !result.range.isEmpty
        else { return distrust(slot) }
        statistics[slot.index].tasksDone += result.range.count
        statistics[slot.index].busyTime += .nanoseconds(Int64(clamping: result.nanoseconds))
        slot.inFlight[0].next = result.range.upperBound
        slot.inFlight[0].waitingSince = monotonicNanoseconds()
        let chunk = head.chunk
        // The item whose timeout passed has already failed; its late result is dropped.
        if case .timedOut(let item, _) = slot.state, result.range.contains(item) {
        } else if !chunk.isComplete {
            let piece: ChunkResult.Piece
            switch result.kind {
            case .values: piece = .values(result.range, payload)
            case .outcomes: piece = .outcomes(result.range, payload)
            case .failed:
                let envelope = try? WireDecoder().decode(ErrorEnvelope.self, from: Array(payload))
                piece = .failed(
                    result.range,
                    envelope?.error ?? MultiprocessingError(.decodingFailed, "a worker's failure could not be decoded"))
            }
            chunk.add(piece, nanoseconds: result.nanoseconds)
            if chunk.isCovered { complete(chunk) }
        }
        if result.range.upperBound == head.range.upperBound { finishJob(in: slot) }
    }

    /// Drops the finished job at the front of a worker's queue.
    private func finishJob(in slot: WorkerSlot) {
        let job = slot.inFlight.removeFirst()
        slot.inFlightItems -= job.range.count
        if job.carriesDescriptors { slot.inFlightWithDescriptors -= 1 }
        stopIfOnlyCancelledWorkIsLeft(slot)
    }

    /// A worker of a closed pool that holds only cancelled jobs would run
    /// them for nothing: it is stopped at once.
    func stopIfOnlyCancelledWorkIsLeft(_ slot: WorkerSlot) {
        guard phase != .accepting, !slot.inFlight.isEmpty, !slot.stoppedByPool,
            slot.inFlight.remaining.allSatisfy({ $0.chunk.isComplete })
        else { return }
        stop(slot, now: true)
    }

    // MARK: Exits

    func workerExited(_ slot: WorkerSlot) {
        guard let status = slot.process.reapIfExited() else { return }
        // Every result the worker sent counts, in order: the ring's, then the
        // pipe's, the last of which may have lost its marker with the worker.
        if (try? Platform.waitReadable([slot.results.readFD], deadline: .now).first) == true { readPipe(slot) }
        takeResults(slot)
        while !slot.pipeResults.isEmpty { handleResult(slot.pipeResults.removeFirst(), from: slot) }
        if slot.retiring {
            log(.info, "pool worker recycled: it grew past its memory limit", slot)
        } else if !slot.stoppedByPool && !slot.isTimedOut && phase != .terminating
            && (slot.takesWork || !slot.inFlight.isEmpty)
        {
            var metadata: Logger.Metadata = ["status": "\(status)"]
            if let job = slot.inFlight.first { metadata["work"] = "\(job.chunk.kind.label)" }
            log(.warning, "pool worker died; it is replaced", slot, metadata)
        } else {
            log(.debug, "pool worker exited", slot, ["status": "\(status)"])
        }
        slots.removeAll { $0 === slot }
        slot.work.close()
        slot.results.close()
        let jobs = slot.inFlight.remaining.filter { !$0.chunk.isComplete }
        if let failure = broken
            ?? (phase == .terminating ? MultiprocessingError(.closed, "the pool was terminated") : nil)
        {
            for job in jobs { complete(job.chunk, failingRestWith: failure) }
        } else {
            var again: [EngineJob] = []
            for (position, job) in jobs.enumerated() {
                again += position == 0 ? requeueHead(job, of: slot, status: status) : [rest(of: job)]
            }
            pending.prepend(contentsOf: again.filter { !$0.range.isEmpty })
        }
        replace(slot)
        if slots.isEmpty && !pending.isEmpty {
            failPending(broken ?? MultiprocessingError(.closed, "the pool has no workers left"))
        }
    }

    /// The jobs that run again of the job a dead worker was running: the
    /// items before the one it died in (finished, but their results died
    /// with it), and the items after. The item it died in fails, alone.
    private func requeueHead(_ job: EngineJob, of slot: WorkerSlot, status: TerminationStatus) -> [EngineJob] {
        let chunk = job.chunk
        var failedItem: Int?
        if case .timedOut(let item, _) = slot.state {
            failedItem = item  // failed when its time ran out
        } else if !slot.retiring && !slot.stoppedByPool {
            let running = slot.status.read()
            if running.job == job.id, job.next <= running.item, running.item < job.range.upperBound {
                failedItem = running.item
            } else {
                // Died between items (or before the first): nothing to blame,
                // unless it keeps happening.
                chunk.unblamedDeaths += 1
                if chunk.unblamedDeaths >= 3 { failedItem = job.next }
            }
            if let item = failedItem {
                chunk.add(.failed(item..<item + 1, workerDied(slot, status, chunk, item: item)))
                if chunk.isCovered { complete(chunk) }
            }
        }
        guard let item = failedItem else { return [rest(of: job)] }
        return [
            EngineJob(id: makeJobID(), chunk: chunk, range: job.next..<max(job.next, item)),
            EngineJob(id: makeJobID(), chunk: chunk, range: max(job.next, item + 1)..<job.range.upperBound),
        ]
    }

    private func rest(of job: EngineJob) -> EngineJob {
        EngineJob(id: makeJobID(), chunk: job.chunk, range: job.next..<job.range.upperBound)
    }

    private func workerDied(
        _ slot: WorkerSlot, _ status: TerminationStatus, _ chunk: EngineChunk, item: Int
    ) -> MultiprocessingError {
        let pid = slot.process.pid ?? 0
        var error = MultiprocessingError(
            .workerDied,
            "pool worker \(slot.index) (pid \(pid)) \(status) while running \(chunk.label(items: item..<item + 1))")
        error.terminationStatus = status
        error.pid = pid
        error.workerIndex = slot.index
        error.itemIndex = chunk.firstItem.map { $0 + item }
        error.work = chunk.kind.label
        error.crashReport = slot.process.crashReport
        return error
    }

    // MARK: Timeouts

    /// The earliest time the engine must look at the workers again.
    func nextDeadline() -> UInt64? {
        var earliest: UInt64?
        for slot in slots {
            let deadline: UInt64?
            if case .timedOut(_, let killAt) = slot.state {
                deadline = killAt
            } else {
                deadline = itemDeadline(slot)?.deadline
            }
            if let deadline { earliest = min(earliest ?? deadline, deadline) }
        }
        return earliest
    }

    /// The item a worker runs now and when its time runs out.
    private func itemDeadline(_ slot: WorkerSlot) -> (item: Int, deadline: UInt64)? {
        guard let timeout = timeoutNanoseconds, slot.state == .running || slot.state == .stopping,
            let job = slot.inFlight.first
        else { return nil }
        let running = slot.status.read()
        if running.job == job.id, running.item >= job.next {
            return (running.item, max(running.startedAt, job.waitingSince) &+ timeout)
        }
        return (job.next, job.waitingSince &+ timeout)
    }

    func enforceTimeouts() {
        guard timeoutNanoseconds != nil else { return }
        let now = monotonicNanoseconds()
        for slot in slots {
            if case .timedOut(let item, let killAt) = slot.state {
                if killAt <= now {
                    slot.process.signalGroup(.kill)
                    slot.state = .timedOut(item: item, killAt: .max)
                }
                continue
            }
            guard let (item, deadline) = itemDeadline(slot), deadline <= now, let job = slot.inFlight.first else {
                continue
            }
            let chunk = job.chunk
            if !chunk.isComplete {
                let pid = slot.process.pid ?? 0
                var error = MultiprocessingError(
                    .timedOut,
                    "\(chunk.label(items: item..<item + 1)) ran longer than its timeout of \(options.taskTimeout!) "
                        + "in pool worker \(slot.index) (pid \(pid)); the worker was stopped and replaced")
                error.pid = pid
                error.workerIndex = slot.index
                error.itemIndex = chunk.firstItem.map { $0 + item }
                error.work = chunk.kind.label
                chunk.add(.failed(item..<item + 1, error))
                if chunk.isCovered { complete(chunk) }
            }
            log(
                .warning, "an item ran past the task timeout; its worker is stopped and replaced", slot,
                ["work": "\(chunk.label(items: item..<item + 1))", "timeout": "\(options.taskTimeout!)"])
            slot.process.signalGroup(.terminate)
            slot.state = .timedOut(
                item: item, killAt: now &+ UInt64(clamping: Platform.timeoutNanoseconds(options.gracePeriod)))
        }
    }
}
