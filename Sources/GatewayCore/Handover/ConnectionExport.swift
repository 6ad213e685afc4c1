import Atomics
import CURCU
import Glibc

/// The old process's side of a hot restart's hand-over (docs/HANDOVER.md), driven by one thread (the
/// control socket's): it quiesces the open clients a batch at a time while the others are served,
/// reads each one's state, and after the batch is sent lets Monitor detach them without shutdown(2);
/// a batch that could not be sent is resumed and served on here.
public final class ConnectionExport: @unchecked Sendable {  // one thread uses it; slots follow HandoverStep
    private unowned let engine: Engine
    private let table: ConnectionTable
    /// The next slot index to look at, and the end of the slots in use when the hand-over began
    /// (accepting is held, so no client opens past it).
    private var cursor: UInt32 = 0
    private let end: UInt32
    /// Clients left here (not quiet in time, or of a kind that cannot move): the drain ends them.
    public private(set) var kept = 0

    init(engine: Engine) {
        self.engine = engine
        table = engine.table
        end = table.usedRange.upperBound
    }

    /// Every slot has been looked at.
    public var isDone: Bool { cursor >= end }

    /// Up to `limit` clients, quiesced within `nanoseconds`: each is `movingOut` (no stage acts on
    /// it, no close can start) until `handedOver` or `resume`. Clients that are not quiet in time
    /// are resumed at once and left here.
    public func quiesce(upTo limit: Int, within nanoseconds: UInt64) -> QuiescedBatch {
        // A registered, online QSBR reader: no slot this holds an id of is reclaimed and reused under it.
        gw_rcu_register_thread()
        defer { gw_rcu_unregister_thread() }
        var started: [ConnectionID] = []
        while started.count < limit, cursor < end {
            let index = cursor
            cursor += 1
            let s = table.slot(index)
            guard s.state == .open else { continue }
            let id = ConnectionID(index: index, generation: s.generation.load(ordering: .acquiring))
            // A forwarding client moves while every link up answers MOVE (docs/LINK.md).
            guard Self.mayMove(s), engine.deal.uplinks == nil || engine.linksMove.load(ordering: .acquiring) else {
                kept += 1
                continue
            }
            guard s.atomic(\.handover).compareExchange(expected: 0, desired: HandoverStep.stopReading.rawValue,
                                                       ordering: .acquiringAndReleasing).exchanged else { continue }
            engine.receive.input.post(s, id)
            started.append(id)
        }
        let deadline = MonotonicClock.nanoseconds() &+ nanoseconds
        var waiting = started
        while !waiting.isEmpty, MonotonicClock.nanoseconds() < deadline {
            waiting.removeAll { id in
                let s = table.slot(id.index)
                return !s.holds(id) || s.state != .open || s.handoverStep == .quiet
            }
            if !waiting.isEmpty { usleep(200) }
        }
        var batch = QuiescedBatch()
        for id in started {
            let s = table.slot(id.index)
            guard s.holds(id) else { continue }  // closed meanwhile, for its own reasons
            let quiet = s.handoverStep == .quiet
            guard quiet, s.beginMovingOut() else {
                if s.state == .open {
                    resume(id, s, quiet: quiet)
                    kept += 1
                }
                continue
            }
            // Quiet now, so the stages' own fields can be read: a client may have ended meanwhile.
            guard Self.stillMovable(s) else {
                resume(id, s, quiet: true)
                kept += 1
                continue
            }
            batch.ids.append(id)
            batch.connections.append(snapshot(id, s))
        }
        return batch
    }

    /// The batch is in the new process (or in flight to it): Monitor detaches each connection without
    /// shutdown(2) and Deal finishes it with cause `handedOver`; its descriptor here closes after the
    /// grace period, the new process holding its own.
    public func handedOver(_ batch: QuiescedBatch) {
        for id in batch.ids {
            let s = table.slot(id.index)
            s.movedOut()
            engine.closeRequests.post(s, id)
        }
        engine.counters.add(.handedOver, UInt64(batch.ids.count))
        engine.counters.add(.sessionsMovedOut, UInt64(batch.connections.count(where: { $0.session != nil })))
    }

    /// Connections handed over and then lost with the new process (it died, or stalled before it
    /// confirmed them): counted, beside those handed over.
    public func lost(_ count: Int) {
        engine.counters.add(.handoverLost, UInt64(count))
    }

    /// The batch could not be sent: every connection in it is served here again, as before.
    public func resume(_ batch: QuiescedBatch) {
        for id in batch.ids { resume(id, table.slot(id.index), quiet: true) }
        kept += batch.ids.count
    }

    /// Calls a connection's hand-over off. Each stage is handed it again: an arrival reported while it
    /// was held was dropped (epoll reports each arrival once).
    private func resume(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>, quiet: Bool) {
        // Send has stopped only once quiet: then its blocked mark is stale, and clearing it re-arms the stall timer.
        if quiet { s.atomic(\.writeBlocked).store(0, ordering: .relaxed) }
        s.atomic(\.handover).store(0, ordering: .sequentiallyConsistent)
        s.cancelMovingOut()
        engine.receive.input.post(s, id)
        engine.deal.input.post(s, id)
        engine.send.input.post(s, id)
    }

    /// What can move, judged from fields set before the connection opened: a plain client (TLS and
    /// WebSocket keep record and framing state in user space: they stay for the drain).
    private static func mayMove(_ s: UnsafeMutablePointer<ConnectionSlot>) -> Bool {
        s.kind == .client && s.pointee.monitor.transport == TransportKind.plain.rawValue
            && s.atomic(\.reconnectNotice).load(ordering: .acquiring) == 0
    }

    /// Once quiet: not ending (its end of stream, a graceful close), past its PROXY header.
    private static func stillMovable(_ s: UnsafeMutablePointer<ConnectionSlot>) -> Bool {
        !s.pointee.receive.awaitingProxy && !s.endings.hasInputEnded && !s.endings.isFlushing
            && s.endings.lingering == nil
            && s.atomic(\.reconnectNotice).load(ordering: .acquiring) == 0
    }

    /// The state that travels: what was read and not dealt, what was produced and not written.
    private func snapshot(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) -> MovedConnection {
        var input: [UInt8] = []
        Self.copy(table.receiveRing(id.index), from: Int(s.pointee.deal.dealOffset), into: &input)
        s.pointee.receive.assembly.copyPartial(into: &input)
        var output: [UInt8] = []
        Self.copy(table.sendRing(id.index), from: Int(s.pointee.send.writeOffset), into: &output)
        s.pointee.deal.backlog.copyBytes(into: &output)
        return MovedConnection(fd: s.pointee.monitor.fd, peer: s.pointee.monitor.peer,
                               addressCounted: s.atomic(\.addressCounted).load(ordering: .acquiring) == 1,
                               input: input, output: output, session: engine.sessionsOut.take(id))
    }
}

extension ConnectionExport {
    /// Appends the bytes a ring's descriptors cover, the first from `skip` on (dealt, or written).
    fileprivate static func copy(_ ring: FrameRing, from skip: Int, into out: inout [UInt8]) {
        for i in 0..<ring.count {
            let d = ring.peek(i).pointee
            let from = i == 0 ? skip : 0
            out.append(contentsOf: UnsafeRawBufferPointer(start: d.start + from, count: Int(d.length) - from))
        }
    }
}

/// Clients quiesced for one batch of a hand-over, and their state; their descriptors stay this
/// process's until `ConnectionExport.handedOver`.
public struct QuiescedBatch: Sendable {
    var ids: [ConnectionID] = []
    public var connections: [MovedConnection] = []
}
