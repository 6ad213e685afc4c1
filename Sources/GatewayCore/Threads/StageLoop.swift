import CLinux
import CURCU
import Glibc

/// The loop every stage thread (Receive, Deal, Send) runs: drain the inbox,
/// run due timers, announce a quiescent state; when idle, spin for a bounded
/// time (yielding the CPU each round, since four threads and a load tool share
/// two cores), then sleep on the doorbell.
protocol StageWorker: AnyObject {
    var input: StageInbox { get }
    var table: ConnectionTable { get }
    /// Handles one open connection from the inbox (the guard in `dispatch` has run).
    func service(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>)
    /// Handles a connection Monitor has detached (only Deal, which finishes closes, cares).
    func detached(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>)
    /// Runs timers up to `tick`.
    func advanceTimers(to tick: UInt64)
    /// Called once per batch, after the inbox was drained (flush deferred work).
    func batchDone()
    /// How many more bytes of this batch's work may be done here by the next
    /// stage rather than handed over (StageInbox.postOrRun).
    var inlineAllowance: Int { get set }
    /// Bytes this stage has moved (read, dealt or written) since it started:
    /// what an inline run of it is charged.
    var bytesMoved: Int { get }
}

extension StageWorker {
    func batchDone() {}
    func detached(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) {}

    /// The guard every id from an inbox passes, in one place: the slot still holds it (not closed
    /// and reused since it was posted), the gate opens before the connection is looked at (so an
    /// event posted from now on is not lost), and only then, by its state, the stage's work.
    @inline(__always)
    func dispatch(_ id: ConnectionID) {
        let s = table.slot(id.index)
        guard s.holds(id) else { return }
        input.openGate(s)
        switch s.state {
        case .open: service(id, s)
        case .detached: detached(id, s)
        default: break
        }
    }

    /// Hands `id` to this stage, or runs its work for it on the caller's thread
    /// when the stage sleeps and the caller's `allowance` permits (StageInbox.postOrRun).
    @inline(__always)
    func postOrRun(_ s: UnsafeMutablePointer<ConnectionSlot>, _ id: ConnectionID, allowance: inout Int) {
        input.postOrRun(s, id, allowance: &allowance, self)
    }

    /// Runs this stage's work for one connection on the calling thread (which
    /// holds the stage's token); that connection may go on to the next stage here
    /// too. Returns the bytes the run moved.
    func runInline(_ id: ConnectionID) -> Int {
        let saved = inlineAllowance
        let before = bytesMoved
        inlineAllowance = 1
        dispatch(id)
        batchDone()
        inlineAllowance = saved
        return bytesMoved &- before
    }

    func runLoop(engine: Engine) {
        gw_rcu_register_thread()
        defer { gw_rcu_unregister_thread() }
        let spin = UInt64(engine.config.spinMicroseconds) * 1000
        var seenTick: UInt64 = 0
        input.acquireToken()
        defer { input.releaseToken() }
        while true {
            // Timers first, so that connections serviced below are timed from the current tick.
            let tick = input.currentTick
            var worked = tick != seenTick
            if worked {
                seenTick = tick
                advanceTimers(to: tick)
            }
            inlineAllowance = engine.config.inlineBytes
            if input.inbox.drain({ dispatch(ConnectionID(packed: $0)) }) > 0 {
                batchDone()
                worked = true
            }
            gw_rcu_quiescent_state()
            if worked { continue }
            if engine.stagesShouldExit { return }
            if !spinForWork(nanoseconds: spin, seenTick: seenTick) {
                input.releaseToken()
                input.doorbell.sleep { !input.inbox.isEmpty || input.currentTick != seenTick || engine.stagesShouldExit }
                input.acquireToken()
            }
        }
    }

    /// Spins until work arrives or the budget runs out; true if work arrived.
    private func spinForWork(nanoseconds: UInt64, seenTick: UInt64) -> Bool {
        guard nanoseconds > 0 else { return false }
        let deadline = MonotonicClock.nanoseconds() &+ nanoseconds
        repeat {
            for _ in 0..<32 {
                if !input.inbox.isEmpty { return true }
                gw_cpu_relax()
            }
            if input.currentTick != seenTick { return true }
            sched_yield()
        } while MonotonicClock.nanoseconds() < deadline
        return false
    }
}
