import Atomics

/// The hand-off point into one stage thread: an inbox of connection ids, the
/// per-connection event gate that keeps an id in it at most once, the doorbell
/// the thread sleeps on, and the tick count Monitor advances.
final class StageInbox: @unchecked Sendable {  // all shared state is atomic or lock-guarded
    let name: String
    let inbox: Inbox
    let doorbell = Doorbell()
    private let gate: WritableKeyPath<ConnectionSlot, UInt8.AtomicRepresentation>
    private let tick = ManagedAtomic<UInt64>(0)
    /// Armed timers in the stage's wheel: Monitor wakes a sleeping stage for a tick only when it has some.
    let armedTimers = ManagedAtomic<Int>(0)
    /// Set by a stage whose waker is not the doorbell (Monitor sleeps in the poller).
    var wake: (() -> Void)?

    init(name: String, gate: WritableKeyPath<ConnectionSlot, UInt8.AtomicRepresentation>, capacity: Int) {
        self.name = name
        self.gate = gate
        inbox = Inbox(capacity: capacity)
    }

    /// Queues `id` unless it is queued already; wakes the thread on the empty-to-non-empty edge.
    @inline(__always)
    func post(_ slot: UnsafeMutablePointer<ConnectionSlot>, _ id: ConnectionID) {
        guard slot.atomic(gate).exchange(1, ordering: .acquiringAndReleasing) == 0 else { return }
        if inbox.push(id.packed) {
            if let wake { wake() } else { doorbell.ring() }
        }
    }

    /// Consumer side: opens the gate for `slot` before its events are handled,
    /// so an event arriving meanwhile queues the id again rather than being lost.
    @inline(__always)
    func openGate(_ slot: UnsafeMutablePointer<ConnectionSlot>) {
        slot.atomic(gate).store(0, ordering: .sequentiallyConsistent)
    }

    /// Monitor's clock: publishes tick `t` and wakes the stage if it has timers to run.
    func advanceTick(to t: UInt64) {
        tick.store(t, ordering: .releasing)
        if armedTimers.load(ordering: .relaxed) > 0 { doorbell.ring() }
    }

    @inline(__always)
    var currentTick: UInt64 { tick.load(ordering: .acquiring) }
}
