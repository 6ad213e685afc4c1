import Atomics
import Logging

/// Output on the upstream links, and the clients (or lower links) that wait for room on one.
extension Uplinks {
    /// Link output needs one ring entry for the pending descriptor plus one per message it may start.
    static let room = 3

    /// Writes a link message into Deal's reply block and appends it to the link's pending output.
    func compose(on position: Int, length: Int, _ write: (UnsafeMutableRawPointer) -> Void) {
        let (chunk, offset) = deal.reserve(length)
        write(chunk.bytes + offset)
        let d = FrameDescriptor(chunk: chunk, offset: UInt32(offset), length: UInt32(length))
        if var p = links[position].pending, p.chunk == d.chunk, p.offset + p.length == d.offset {
            p.length += d.length
            links[position].pending = p
        } else {
            if let p = links[position].pending, let link = links[position].id { push(p, on: link) }
            markDirty(position)
            d.chunk.retain()
            links[position].pending = d
        }
        if chunk != deal.outBlock { deal.pool.release(chunk) }  // a message too big for the block: its own chunk
    }

    /// Link output goes on the link's ring or backlog. Past the link's byte bound the
    /// upper side has taken nothing for that long: the link is closed as a slow consumer.
    func push(_ d: FrameDescriptor, on link: ConnectionID) {
        let ls = table.slot(link.index)
        guard deal.queueOutput(d, link, ls) else {
            engine.logger.warning(
                "link \(link) to \(ls.pointee.monitor.peer): over \(deal.queueBound(ls)) bytes queued, closing")
            engine.requestClose(link, cause: .slowConsumer)
            return
        }
    }

    /// Room for a client frame going up: clients wait (in the link's list) while the link's
    /// output is backed up, so a slow core pushes back on its clients, never on memory.
    func hasRoom(_ link: ConnectionID, _ ls: UnsafeMutablePointer<ConnectionSlot>) -> Bool {
        ls.pointee.deal.backlog.isEmpty && table.sendRing(link.index).freeCount >= Self.room
    }

    /// End of a batch: every link's pending output goes on its ring, and Send is told.
    func flush() {
        for position in dirty {
            links[position].dirty = false
            guard let link = links[position].id else { continue }
            if let d = links[position].pending {
                links[position].pending = nil
                push(d, on: link)
            }
            engine.send.postOrRun(table.slot(link.index), link, allowance: &deal.inlineAllowance)
        }
        dirty.removeAll(keepingCapacity: true)
    }

    /// Link `link` at `position` has no room: `s` (a client, or a lower link) waits in its list, its
    /// dealing paused; Send posts the link back to Deal when it has made room (the link's dealPaused).
    func pause(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>, on link: ConnectionID,
               at position: Int, _ ls: UnsafeMutablePointer<ConnectionSlot>) {
        s.pointee.deal.waiting = true
        s.pointee.deal.waitSince = deal.input.currentTick
        s.pointee.deal.waitPosition = UInt16(position)
        s.pointee.deal.waitNext = Uplinks.none
        s.pointee.deal.waitPrev = links[position].waitTail
        if links[position].waitTail == Uplinks.none {
            links[position].waitHead = id.index
        } else {
            table.slot(links[position].waitTail).pointee.deal.waitNext = id.index
        }
        links[position].waitTail = id.index
        ls.atomic(\.dealPaused).store(1, ordering: .sequentiallyConsistent)
        // Pairs with Send's fence before it reads dealPaused: room made meanwhile is not missed.
        if hasRoom(link, ls) { deal.input.post(ls, link) }
    }

    /// Takes `s` out of its link's wait list.
    func stopWaiting(_ s: UnsafeMutablePointer<ConnectionSlot>) {
        guard s.pointee.deal.waiting else { return }
        s.pointee.deal.waiting = false
        let position = Int(s.pointee.deal.waitPosition)
        let (prev, next) = (s.pointee.deal.waitPrev, s.pointee.deal.waitNext)
        if prev == Uplinks.none {
            links[position].waitHead = next
        } else {
            table.slot(prev).pointee.deal.waitNext = next
        }
        if next == Uplinks.none {
            links[position].waitTail = prev
        } else {
            table.slot(next).pointee.deal.waitPrev = prev
        }
    }

    /// Every client waiting on the link is dealt again (it may find room, another link, or none).
    func wakeWaiters(_ position: Int) {
        var index = links[position].waitHead
        while index != Uplinks.none {
            let s = table.slot(index)
            let next = s.pointee.deal.waitNext
            s.pointee.deal.waiting = false
            deal.input.post(s, ConnectionID(index: index, generation: s.generation.load(ordering: .acquiring)))
            index = next
        }
        links[position].waitHead = Uplinks.none
        links[position].waitTail = Uplinks.none
    }
}
