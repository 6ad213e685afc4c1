import Glibc

/// A hot restart's hand-over of live connections (docs/HANDOVER.md), on the engine's side; the
/// protocol that carries them between the processes is the front end's (GatewayCLI/Handover).
extension Gateway {
    /// Holds (or resumes) accepting on the listeners, which stay open; returns once Monitor has done
    /// it, or false if it did not within two seconds (it is stopping).
    @discardableResult
    public func holdAccepting(_ hold: Bool) -> Bool {
        guard let monitor else { return false }
        monitor.handover.holdAsked.store(hold, ordering: .releasing)
        monitor.poller.wake()
        let deadline = MonotonicClock.nanoseconds() &+ 2_000_000_000
        while monitor.handover.holdApplied.load(ordering: .acquiring) != hold {
            if MonotonicClock.nanoseconds() >= deadline || engine.stagesShouldExit { return false }
            usleep(1000)
        }
        return true
    }

    /// The old process: its clients as they are now, to quiesce and send a batch at a time.
    public func exportConnections() -> ConnectionExport {
        ConnectionExport(engine: engine)
    }

    /// The new process: serve connections the old one handed over, with the state they carried.
    public func adopt(_ connections: [MovedConnection]) {
        guard let monitor, !connections.isEmpty else {
            for c in connections { close(c.fd) }
            return
        }
        monitor.handover.add(connections)
        monitor.poller.wake()
    }
}
