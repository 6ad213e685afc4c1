import Atomics

/// The one way onto a connection's output, for clients and links alike (Deal is the only
/// producer of every send ring). What waits for one socket is bounded in bytes
/// (`max_queued_bytes`, links a multiple of it), never in ring entries: a full ring
/// spills into the connection's backlog, so a burst is not a fault and nothing for one
/// connection ever pauses the link or stage its output came from.
extension DealStage {
    /// A link carries many sessions: its output may hold this many times a client's bound.
    static let linkQueueFactor = 16

    /// The byte bound on what may wait for `s`'s socket.
    func queueBound(_ s: UnsafeMutablePointer<ConnectionSlot>) -> Int {
        s.pointee.monitor.isClient ? live.maxQueuedBytes : live.maxQueuedBytes &* Self.linkQueueFactor
    }

    /// Whether `length` more bytes stay within `s`'s bound. With all the gateway's buffers past three
    /// quarters of max_buffered_bytes, a client whose output is already backed up (its ring full or
    /// its backlog in use) counts as past its bound too: many clients each under their own bound
    /// must not add up to more memory than the box has, and backlogs alone never push the gateway
    /// into shedding (which stops reading every client). Links are never held to it.
    func fitsQueue(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>, _ length: Int) -> Bool {
        guard s.outstandingBytes + length <= queueBound(s) else { return false }
        guard s.pointee.monitor.isClient, live.maxBufferedBytes > 0,
              !s.pointee.deal.backlog.isEmpty || table.sendRing(id.index).freeCount == 0 else { return true }
        return pool.bytesInUse <= live.maxBufferedBytes / 4 * 3
    }

    /// Queues `d` (whose reference this takes over) for `id`'s socket: on the send ring while
    /// it has room and nothing waits before, else copied into the backlog. False, with the
    /// reference released and nothing queued, when it would pass the byte bound: the caller
    /// applies its policy (close as a slow consumer, or drop a push).
    func queueOutput(_ d: FrameDescriptor, _ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) -> Bool {
        guard fitsQueue(id, s, Int(d.length)) else {
            pool.release(d.chunk)
            return false
        }
        // Plain loads and stores of the slot's fields, never an inout access through `pointee` (which
        // spans the whole record, read atomically by other threads).
        s.pointee.deal.queuedBytes = s.pointee.deal.queuedBytes &+ UInt64(d.length)
        // Whoever it is for (the client being dealt, a push, a link): its ring is looked at next tick.
        if ringSweep.keep(id, s) { publishTimers() }
        let ring = table.sendRing(id.index)
        if s.pointee.deal.backlog.isEmpty, ring.push(d) { return true }
        var backlog = s.pointee.deal.backlog
        backlog.append(d.start, count: Int(d.length), pool: pool)
        s.pointee.deal.backlog = backlog
        pool.release(d.chunk)
        // Before any close flag Deal may set after it: Send reads it before it finishes a close.
        if !s.flag(\.backlogged) { s.atomic(\.backlogged).store(1, ordering: .sequentiallyConsistent) }
        awaitSendRoom(id, s, ring)
        return true
    }

    /// Send made room (it posted the connection back): the backlog moves onto the ring.
    func drainBacklog(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) {
        guard !s.pointee.deal.backlog.isEmpty else { return }
        if ringSweep.keep(id, s) { publishTimers() }
        let ring = table.sendRing(id.index)
        var backlog = s.pointee.deal.backlog
        let drained = backlog.drain(into: ring, pool: pool)
        s.pointee.deal.backlog = backlog
        if drained {
            s.atomic(\.backlogged).store(0, ordering: .sequentiallyConsistent)
        } else {
            awaitSendRoom(id, s, ring)
        }
        engine.send.postOrRun(s, id, allowance: &inlineAllowance)
    }

    /// Asks Send to post `id` back to Deal once it has taken entries off the ring.
    private func awaitSendRoom(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>, _ ring: FrameRing) {
        s.atomic(\.dealPaused).store(1, ordering: .sequentiallyConsistent)
        // Pairs with Send's fence before it reads dealPaused: room made meanwhile is not missed.
        if ring.freeCount > 0 { input.post(s, id) }
    }

    /// Asks for `id` to be closed with `cause` once what is queued for it is sent; the first close
    /// asked for wins. `sendNow` at the end of a connection's turn lets Send run on this thread when
    /// it sleeps; from inside a handler's call or a link's batch Send is only posted.
    func closeAfterReplies(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>, cause: CloseCause,
                           sendNow: Bool = false) {
        guard s.endings.closeAfterReplies(cause) else { return }
        if sendNow {
            engine.send.postOrRun(s, id, allowance: &inlineAllowance)
        } else {
            engine.send.input.post(s, id)
        }
    }
}
