#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import Synchronization

/// Every started child that has not been reaped yet.
///
/// It keeps a child alive until it is reaped, so a dropped ``ChildProcess``
/// never leaves a zombie: finished children are reaped whenever a child
/// starts or ``activeChildren()`` is called, and at exit daemon children are
/// terminated and the others joined (Python's rules).
final class ChildRegistry: Sendable {
    static let shared = ChildRegistry()

    private let children = ForkSafeMutex<[ObjectIdentifier: AnyChildProcess]>([:])
    private let exitHookInstalled = Atomic(false)

    func add(_ child: AnyChildProcess) {
        children.withLock { $0[ObjectIdentifier(child)] = child }
        if exitHookInstalled.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged {
            atexit { ChildRegistry.shared.cleanUpAtExit() }
        }
    }

    func remove(_ child: AnyChildProcess) {
        _ = children.withLock { $0.removeValue(forKey: ObjectIdentifier(child)) }
    }

    /// The children still running; finished ones are reaped.
    func active() -> [AnyChildProcess] {
        snapshot().filter(\.isAlive)
    }

    func reapFinished() {
        for child in snapshot() { _ = child.isAlive }
    }

    /// Terminates daemon children and joins the rest.
    func cleanUpAtExit() {
        let all = snapshot()
        for child in all where child.daemon { try? child.terminate() }
        for child in all { _ = try? child.wait(deadline: nil) }
    }

    /// In a forked child the parent's children are not this process's. The
    /// parent's table is set aside, not freed: freeing would write to pages
    /// the child shares with its parent, copying each.
    func forgetAfterFork() {
        children.withLock { children in
            guard !children.isEmpty else { return }
            // Kept for ever in memory of its own (not a global, whose first
            // use would run its initialiser and the runtime's type lookups
            // here, faulting in pages the parent shares).
            UnsafeMutablePointer<[ObjectIdentifier: AnyChildProcess]>.allocate(capacity: 1).initialize(to: children)
            children = [:]
        }
    }

    private func snapshot() -> [AnyChildProcess] {
        children.withLock { Array($0.values) }
    }
}
