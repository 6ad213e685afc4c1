import Atomics
import Glibc

/// The hand-off point into one stage thread: an inbox of connection ids, the
/// per-connection event gate that keeps an id in it at most once, the doorbell
/// the thread sleeps on, the tick count Monitor advances, and the token that
/// says which thread is running the stage's work right now.
///
/// The token makes run-to-completion possible at light load: the stage's own
/// thread holds it while awake and lets go only to sleep; a thread that hands
/// a connection to a sleeping stage with an empty inbox may take the token and
/// do that stage's work itself, sparing the wake-up (tens of microseconds).
/// Stage state stays single-owner and per-connection order is kept, because
/// only the token holder runs the stage and the inbox was empty.
@_spi(Benchmarks) public final class StageInbox: @unchecked Sendable {  // all shared state is atomic or lock-guarded
    let name: String
    let inbox: Inbox
    let doorbell = Doorbell()
    /// Byte offset of this stage's gate in a slot (resolved once: a key path would be walked on every post).
    private let gateOffset: Int
    // UnsafeAtomic rather than ManagedAtomic: these are read on every hand-off and its accessor inlines.
    private let tick = UnsafeAtomic<UInt64>.create(0)
    private let token = UnsafeAtomic<Bool>.create(false)
    /// Armed timers in the stage's wheel: Monitor wakes a sleeping stage for a tick only when it has some.
    let armedTimers = UnsafeAtomic<Int>.create(0)

    init(name: String, gate: WritableKeyPath<SlotFlags, UInt8.AtomicRepresentation>, capacity: Int) {
        self.name = name
        gateOffset = MemoryLayout<ConnectionSlot>.offset(of: \.flags)! + MemoryLayout<SlotFlags>.offset(of: gate)!
        inbox = Inbox(capacity: capacity)
    }

    deinit {
        tick.destroy()
        token.destroy()
        armedTimers.destroy()
    }

    /// Queues `id` unless it is queued already; wakes the thread on the empty-to-non-empty edge.
    @inline(__always)
    func post(_ slot: UnsafeMutablePointer<ConnectionSlot>, _ id: ConnectionID) {
        guard gateAtomic(slot).exchange(1, ordering: .acquiringAndReleasing) == 0 else { return }
        if inbox.push(id.packed) {
            doorbell.ring()
        }
    }

    /// A stage inbox gated on `table`'s slots, as Deal's is: for tests and benchmarks.
    public static func standalone(table: ConnectionTable) -> StageInbox {
        StageInbox(name: "standalone", gate: \.dealGate, capacity: 2 * table.capacity + 1024)
    }

    /// Posts connection `id` of `table` (see `post(_:_:)`).
    public func post(_ id: ConnectionID, in table: ConnectionTable) {
        post(table.slot(id.index), id)
    }

    /// Drains the inbox as a stage thread does, opening each gate before `body` sees the id.
    @discardableResult
    public func drain(in table: ConnectionTable, _ body: (ConnectionID) -> Void) -> Int {
        inbox.drain { packed in
            let id = ConnectionID(packed: packed)
            openGate(table.slot(id.index))
            body(id)
        }
    }

    /// Hands `id` over, or, if the caller still has inline allowance and the
    /// stage is asleep with nothing queued, runs the stage's work for it here
    /// and charges the allowance with the bytes that work moved.
    @inline(__always)
    func postOrRun<Worker: StageWorker>(_ slot: UnsafeMutablePointer<ConnectionSlot>, _ id: ConnectionID,
                                        allowance: inout Int, _ worker: Worker) {
        if allowance > 0, doorbell.isAsleep, inbox.isEmpty, tryAcquireToken() {
            allowance -= worker.runInline(id)
            releaseToken()
            if !inbox.isEmpty { doorbell.ring() }
            return
        }
        post(slot, id)
    }

    @inline(__always)
    func tryAcquireToken() -> Bool {
        !token.load(ordering: .relaxed) && !token.exchange(true, ordering: .acquiring)
    }

    /// The stage's own thread, on waking: waits out an inline runner if there is one.
    func acquireToken() {
        while !tryAcquireToken() { sched_yield() }
    }

    @inline(__always)
    func releaseToken() {
        token.store(false, ordering: .releasing)
    }

    /// Consumer side: opens the gate for `slot` before its events are handled,
    /// so an event arriving meanwhile queues the id again rather than being lost.
    @inline(__always)
    func openGate(_ slot: UnsafeMutablePointer<ConnectionSlot>) {
        gateAtomic(slot).store(0, ordering: .sequentiallyConsistent)
    }

    @inline(__always)
    private func gateAtomic(_ slot: UnsafeMutablePointer<ConnectionSlot>) -> UnsafeAtomic<UInt8> {
        UnsafeAtomic(at: (UnsafeMutableRawPointer(slot) + gateOffset).assumingMemoryBound(to: UInt8.AtomicRepresentation.self))
    }

    /// Monitor's clock: publishes tick `t` and wakes the stage if it has timers to run.
    func advanceTick(to t: UInt64) {
        tick.store(t, ordering: .releasing)
        if armedTimers.load(ordering: .relaxed) > 0 { doorbell.ring() }
    }

    @inline(__always)
    var currentTick: UInt64 { tick.load(ordering: .acquiring) }
}
