#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif
import CMultiprocessing
import Synchronization

/// A fork server made by forking this process: the C loop of `boot.c`, in a
/// copy of this process that keeps its state (a ``ForkingPool``'s closure).
/// `prepareChild` runs in the copy before it serves.
final class Zygote: Sendable {
    let control: Int32
    let pid: pid_t

    private init(control: Int32, pid: pid_t) {
        self.control = control
        self.pid = pid
    }

    static func fork(
        allowingOtherThreads: Bool, prepareChild: () -> Void
    ) throws -> Zygote {
        try prepareToFork(
            allowingOtherThreads: allowingOtherThreads,
            alternatives: "A ForkingPool forks this process: create it before starting threads, use a ProcessPool "
                + "with a ProcessFunction, or pass allowingOtherThreads: true")
        let lifeline = try Lifeline.readEnd()
        _ = Launcher.warmedForForkedChildren
        let pair = try Platform.makeMessageSocketPair()
        let fromMainThread = mp_is_main_thread() != 0
        let pid: pid_t
        do {
            pid = try Platform.fork()
        } catch {
            Platform.close(pair[0])
            Platform.close(pair[1])
            throw error
        }
        if pid == 0 {
            // The zygote and the workers it forks start clean, whatever the
            // caller had blocked or ignored: with SIGCHLD blocked the zygote
            // would never learn that a worker exited.
            mp_reset_signals()
            Platform.close(pair[0])
            let parent = getppid()
            ChildRuntime.forgetParentAfterFork()
            if fromMainThread { mp_die_with_parent(parent) }
            prepareChild()
            // Returns only in a worker, with its descriptors in place.
            mp_forkserver_serve(pair[1], lifeline)
            mp_set_boot_mode(2)
            let code = ChildRuntime.main()
            fflush(nil)
            mp_exit_now(code)
        }
        Platform.close(pair[1])
        // Set first: a fork between the two would otherwise keep the copy.
        anyOpened.store(true, ordering: .relaxed)
        openControls.withLock { $0.append(pair[0]) }
        return Zygote(control: pair[0], pid: pid)
    }

    /// The control sockets of this process's zygotes. A zygote exits when
    /// its socket's last copy closes, so a forked process (another pool's
    /// zygote and its workers, a `.fork` child) must not keep a copy: one
    /// pool's terminate() would wait for another pool to end.
    private static let openControls = ForkSafeMutex<[Int32]>([])
    /// Whether this process ever started a zygote. Without one, a forked
    /// child leaves `openControls` alone: the first touch of a lazy global
    /// runs its initialiser there, and the runtime's type lookups it needs
    /// fault in a score of pages that the parent shares with the child.
    private static let anyOpened = Atomic<Bool>(false)

    /// In a forked child: closes the copies of the parent's zygote sockets.
    static func forgetAfterFork() {
        guard anyOpened.load(ordering: .relaxed) else { return }
        openControls.withLock { controls in
            for control in controls { Platform.close(control) }
            controls = []
        }
    }

    /// Closes the control socket (the zygote exits) and reaps it.
    func stop() {
        Self.openControls.withLock { $0.removeAll { $0 == control } }
        Platform.close(control)
        _ = try? Platform.reap(pid)
    }
}
