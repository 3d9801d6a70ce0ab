#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import Logging

/// How queued jobs reach workers. Every method runs with the engine's lock held.
extension PoolEngine {
    /// Gives queued jobs to workers, least busy first. A worker holds at most
    /// two jobs, or up to 1024 small ones (1024 items in all), so that tiny
    /// items travel in batches while a long job holds up little behind it.
    /// With a task timeout a worker holds one job, so that the time of each
    /// of its items is its own.
    func dispatch() {
        if phase != .accepting && pending.isEmpty {
            for slot in slots where slot.takesWork && slot.inFlight.isEmpty { stop(slot) }
        }
        while !pending.isEmpty, let slot = leastLoadedSlot() {
            var job = pending.removeFirst()
            if job.chunk.isComplete { continue }  // cancelled while it waited
            if let limit = options.maxTasksPerWorker, slot.assigned > 0, slot.assigned + job.range.count > limit {
                pending.prepend(contentsOf: [job])
                log(.info, "pool worker recycled after \(slot.assigned) items (maxTasksPerWorker)", slot)
                stop(slot)
                continue
            }
            let chunk = job.chunk
            if !chunk.descriptors.isEmpty {
                // A worker that is gone shows in its exit, which puts the job back.
                try? slot.descriptors.send(chunk.descriptors)
                slot.inFlightWithDescriptors += 1
                job.carriesDescriptors = true
            }
            let sameWork = slot.lastTypeName == chunk.kind.typeName
            let work = PoolMessage.Work(
                id: job.id, typeName: sameWork ? nil : chunk.kind.typeName, range: job.range,
                descriptorCount: chunk.descriptors.count)
            slot.outbox.appendSmall { PoolMessage.appendWork(work, payloadCount: chunk.payload.count, to: &$0) }
            slot.outbox.append(payload: chunk.payload)
            slot.lastTypeName = chunk.kind.typeName
            job.waitingSince = monotonicNanoseconds()
            slot.inFlight.append(job)
            slot.inFlightItems += job.range.count
            slot.assigned += job.range.count
        }
        for slot in slots where !slot.outbox.isEmpty { slot.outbox.flush(to: slot.work.writeFD) }
    }

    /// The worker that can take another job and holds the fewest, if any.
    private func leastLoadedSlot() -> WorkerSlot? {
        var best: WorkerSlot?
        for slot in slots where slot.takesWork && canTake(slot) {
            if best.map({ slot.inFlight.count < $0.inFlight.count }) ?? true { best = slot }
        }
        return best
    }

    private func canTake(_ slot: WorkerSlot) -> Bool {
        if timeoutNanoseconds != nil { return slot.inFlight.isEmpty }
        if slot.inFlightWithDescriptors >= 2 { return false }
        if slot.inFlight.count < 2 { return true }
        return slot.inFlight.count < 1024 && slot.inFlightItems < 1024
    }

    /// Stops a worker: it finishes the jobs it holds and exits; or, `now`,
    /// it is killed with everything it started (it leads its own process
    /// group), and the jobs it held that are not cancelled run elsewhere.
    func stop(_ slot: WorkerSlot, now: Bool = false) {
        if now {
            slot.stoppedByPool = true
            if !slot.isTimedOut { slot.state = .stopping }
            slot.process.signalGroup(.kill)
            return
        }
        guard slot.takesWork else { return }
        slot.state = .stopping
        slot.outbox.appendSmall { PoolMessage.appendStop(to: &$0) }
        slot.outbox.flush(to: slot.work.writeFD)
    }
}
