import Atomics
import Glibc

/// What the control thread asks of Monitor during a hand-over: hold accepting (the listeners stay
/// open, shared with the new process, which accepts meanwhile), and adopt connections moved in.
final class MonitorHandover: @unchecked Sendable {  // atomics, and the adoptions under their lock
    /// Asked for (control thread) and in effect (Monitor).
    let holdAsked = ManagedAtomic<Bool>(false)
    let holdApplied = ManagedAtomic<Bool>(false)
    private let lock = SpinLock()
    private var adoptions: [MovedConnection] = []
    private let queued = ManagedAtomic<Int>(0)

    func add(_ connections: [MovedConnection]) {
        lock.withLock { adoptions += connections }
        queued.wrappingIncrement(by: connections.count, ordering: .releasing)
    }

    /// Monitor: the connections to adopt, if any came.
    func take() -> [MovedConnection] {
        guard queued.load(ordering: .acquiring) > 0 else { return [] }
        let taken = lock.withLock {
            defer { adoptions = [] }
            return adoptions
        }
        queued.wrappingDecrement(by: taken.count, ordering: .releasing)
        return taken
    }
}

extension MonitorThread {
    /// Each loop: a change of the hold, and connections to adopt.
    func serviceHandover() {
        let hold = handover.holdAsked.load(ordering: .acquiring)
        if hold != acceptHeld {
            acceptHeld = hold
            if hold {
                for l in listeners { poller.remove(fd: l.fd) }
                acceptPaused = true
                engine.accepting.store(false, ordering: .releasing)
            }  // released: the next tick watches the listeners again (acceptPaused)
            handover.holdApplied.store(hold, ordering: .releasing)
        }
        for moved in handover.take() { adopt(moved) }
    }

    /// A connection handed over by the process this one took over, into a slot of its own: its output
    /// goes on the send ring first, its input is cut into frames as if just read (a frame half received
    /// stays half assembled), then each stage is handed it.
    private func adopt(_ moved: MovedConnection) {
        guard let index = table.allocate() else {
            close(moved.fd)
            engine.counters.addClose(.overCapacity)
            engine.logger.error("hand-over: no slot for \(moved.peer) (max_connections): closed")
            return
        }
        let s = table.slot(index)
        s.pointee.monitor = MonitorPart(fd: moved.fd, peer: moved.peer)
        let counted = moved.addressCounted && engine.limits.countsConnections
        if counted { engine.limits.count(moved.peer, now: MonotonicClock.nanoseconds()) }
        s.atomic(\.addressCounted).store(counted ? 1 : 0, ordering: .relaxed)
        let id = ConnectionID(index: index, generation: s.generation.load(ordering: .acquiring))
        s.accepted()
        do {
            try poller.addConnection(fd: moved.fd, token: id.packed)
        } catch {
            engine.logger.error("hand-over: registering \(moved.peer): \(error); closed")
            s.withdrawn()
            close(moved.fd)
            if counted { engine.limits.closed(moved.peer) }
            table.release(index)
            return
        }
        engine.counters.add(.handoverAdopted)
        // A forwarding session keeps its id: Deal takes it on the client's first turn (AccessRole+Moves).
        if let session = moved.session {
            if case .access = engine.deal.role { engine.sessionsIn.put(id, session) }
        }
        let pool = engine.pool
        if !moved.output.isEmpty {
            let chunk = pool.allocate(capacity: moved.output.count)
            moved.output.withUnsafeBytes { chunk.bytes.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            _ = table.sendRing(index).push(FrameDescriptor(chunk: chunk, offset: 0, length: UInt32(moved.output.count)))
            s.pointee.deal.queuedBytes = UInt64(moved.output.count)
        }
        var bad: UInt32?
        if !moved.input.isEmpty {
            let block = pool.allocate(capacity: moved.input.count)
            moved.input.withUnsafeBytes { block.bytes.copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
            let ring = table.receiveRing(index)
            let assembly = s.pointer(to: \.receive.assembly)!
            let outcome = assembly.pointee.consume(block: block, start: 0, count: moved.input.count,
                                                   maxFrame: engine.config.maxFrame, pool: pool) { _ = ring.push($0) }
            pool.release(block)
            let held = assembly.pointee.heldBytes
            if held > 0 { engine.pendingBytes.wrappingIncrement(by: held, ordering: .relaxed) }
            s.pointee.receive.frameStartTick = engine.receive.input.currentTick
            if case .badLength(let length, _) = outcome { bad = length }
        }
        engine.deal.postOrRun(s, id, allowance: &inlineAllowance)
        engine.receive.postOrRun(s, id, allowance: &inlineAllowance)
        if !moved.output.isEmpty { engine.send.postOrRun(s, id, allowance: &inlineAllowance) }
        // This process's max_frame may be smaller than the old one's.
        if let bad { engine.protocolError(id, length: bad) }
    }
}
