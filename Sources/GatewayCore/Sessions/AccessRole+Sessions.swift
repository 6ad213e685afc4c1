import Atomics
import Logging

/// Users, rooms and push on the access role (docs/LINK.md): the
/// core's BIND, UNBIND, JOIN and LEAVE shape `Sessions`; PUSH delivers one
/// client frame to every session a scope names, sharing the link block it
/// arrived in (a descriptor and a reference per recipient, no copy); KICK closes
/// them after what is queued; PRESENCE_QUERY is answered with counts.
extension AccessRole {
    /// A session message or a tree-wide message that came down link `position`.
    func applySessionMessage(_ message: LinkMessage, _ d: FrameDescriptor, _ position: Int) {
        switch message {
        case .bind(let session, let uid):
            guard let (id, _) = client(session) else { return }
            sessions.directory.bind(id.index, uid: uid)
        case .unbind(let session):
            guard let (id, _) = client(session) else { return }
            sessions.directory.unbind(id.index)
        case .join(let session, let room):
            guard let (id, _) = client(session) else { return }
            if sessions.directory.join(id.index, room: room) == .full { engine.counters.add(.joinsRefused) }
        case .leave(let session, let room):
            guard let (id, _) = client(session) else { return }
            sessions.directory.leave(id.index, room: room)
        case .push(let tree, let length):
            guard firstCopy(tree) else { return }
            let inner = FrameDescriptor(chunk: d.chunk, offset: d.offset + UInt32(LinkMessage.pushOverhead),
                                        length: length)
            push(inner, to: tree)
        case .kick(let tree):
            guard firstCopy(tree) else { return }
            var kicked: [UInt32] = []  // collected first: leaving the uid or room changes the list walked
            forEachSession(named: tree) { kicked.append($0) }
            for index in kicked {
                let s = table.slot(index)
                let id = ConnectionID(index: index, generation: s.generation.load(ordering: .acquiring))
                deal.closeAfterReplies(id, s, cause: .kicked)
                sessionEnded(s, index)
            }
        case .presenceQuery(let tree):
            guard firstCopy(tree) else { return }
            answerPresence(tree, on: position)
        default:
            preconditionFailure("not a session message: \(message)")
        }
        publishSessionGauges()
    }

    /// Tree-wide messages may come by several paths: the first copy is applied.
    private func firstCopy(_ tree: LinkMessage.TreeWide) -> Bool {
        guard sessions.filter.isNew(origin: tree.origin, seq: tree.seq) else {
            engine.counters.add(.duplicates)
            return false
        }
        sessions.filter.mark(origin: tree.origin, seq: tree.seq)
        return true
    }

    /// Calls `body` with the slot of every open client session on this node the scope names; for
    /// scopes node and all, the sessions the core has bound (an unbound connection is not online).
    private func forEachSession(named tree: LinkMessage.TreeWide, _ body: (UInt32) -> Void) {
        switch tree.scope {
        case .uid: sessions.directory.forEach(uid: tree.target, body)
        case .room: sessions.directory.forEach(room: tree.target, body)
        case .node where tree.target != links.node: return
        case .node, .all:
            for index in table.usedRange {
                let s = table.slot(index)
                if s.pointee.monitor.isClient, s.state == .open, s.pointee.deal.bound { body(index) }
            }
        }
    }

    /// One frame to every recipient: each gets a descriptor of the same bytes (a copy only
    /// where its ring is full). Past max_queued_bytes, push_overflow decides: the recipient
    /// is closed as a slow consumer, or the push dropped and the core told (PUSH_DROPPED).
    /// A recipient already closing is skipped, counted apart.
    private func push(_ inner: FrameDescriptor, to tree: LinkMessage.TreeWide) {
        var delivered: UInt64 = 0
        var dropped: UInt64 = 0
        var closing: UInt64 = 0
        var closed: UInt64 = 0
        let closeOnOverflow = deal.live.pushOverflow == .close
        forEachSession(named: tree) { index in
            let s = table.slot(index)
            let id = ConnectionID(index: index, generation: s.generation.load(ordering: .acquiring))
            guard s.state == .open, !s.endings.isFlushing, !s.passedOnForHandover else {
                closing += 1
                return
            }
            guard deal.fitsQueue(id, s, Int(inner.length)) else {
                if closeOnOverflow {
                    closed += 1
                    engine.requestClose(id, cause: .slowConsumer)
                } else {
                    dropped += 1
                    noteDroppedPush(id, s)
                }
                return
            }
            // Counted before Send can deliver it: a reader of the stats never lags the client.
            engine.counters.add(.pushDeliveries)
            inner.chunk.retain()
            _ = deal.queueOutput(inner, id, s)  // it fits: just checked
            engine.send.input.post(s, id)
            delivered += 1
        }
        let counters = engine.counters
        counters.add(.pushes)
        counters.add(.framesOut, delivered)
        if delivered + dropped + closing + closed == 0 { counters.add(.pushNobody) }
        if dropped > 0 { counters.add(.pushDropped, dropped) }
        if closing > 0 { counters.add(.pushDroppedClosing, closing) }
        if closed > 0 { counters.add(.pushOverflowCloses, closed) }
    }

    /// A push dropped by push_overflow: the core hears of it at the next notice round.
    private func noteDroppedPush(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) {
        s.pointee.deal.pushDrops = s.pointee.deal.pushDrops &+ 1  // not &+=: an inout access spans the whole record
        guard !s.pointee.deal.dropNoticeQueued else { return }
        s.pointee.deal.dropNoticeQueued = true
        sessions.dropNotices.append(id)
    }

    /// Once a second at most: one PUSH_DROPPED per session that lost pushes, with the count, up
    /// the link it was announced on, so the core can resend or resynchronise that user.
    private func sendDropNotices(_ tick: UInt64) {
        guard !sessions.dropNotices.isEmpty, tick &- sessions.lastNoticeTick >= deal.ticksPerSecond else { return }
        sessions.lastNoticeTick = tick
        for id in sessions.dropNotices {
            let s = table.slot(id.index)
            guard s.holds(id), s.state == .open, s.pointee.deal.routed else { continue }
            let count = s.pointee.deal.pushDrops
            s.pointee.deal.pushDrops = 0
            s.pointee.deal.dropNoticeQueued = false
            // The link it was announced on is gone: the core forgot the session with it.
            guard let position = routedPosition(s), links.links[position].up else { continue }
            let notice = LinkMessage.pushDropped(sessionID(id, s), count: count)
            links.compose(on: position, length: notice.encodedLength) { notice.encode(into: $0) }
            engine.counters.add(.pushDropNotices)
        }
        sessions.dropNotices.removeAll(keepingCapacity: true)
    }

    /// PRESENCE up the link the query came down: this node's count for the scope.
    private func answerPresence(_ tree: LinkMessage.TreeWide, on position: Int) {
        let count: Int
        switch tree.scope {
        case .uid: count = sessions.directory.count(uid: tree.target)
        case .room: count = sessions.directory.count(room: tree.target)
        case .node where tree.target != links.node: return  // another node's question
        case .node, .all: count = sessions.directory.boundCount
        }
        guard links.links[position].id != nil else { return }
        let answer = LinkMessage.presence(tree, node: links.node, count: UInt32(clamping: count))
        links.compose(on: position, length: answer.encodedLength) { answer.encode(into: $0) }
    }

    func publishSessionGauges() {
        let directory = sessions.directory
        engine.counters.set(.sessionsBound, UInt64(directory.boundCount))
        engine.counters.set(.uids, UInt64(directory.uidCount))
        engine.counters.set(.rooms, UInt64(directory.roomCount))
        engine.counters.set(.memberships, UInt64(directory.membershipCount))
    }

    // MARK: session life

    /// A forwarded client's first turn on Deal: counted, and timed for auth_timeout.
    func sessionOpened(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) {
        s.pointee.deal.opened = true
        sessions.open += 1
        let table = self.table
        sessions.deadlines?.add(id, now: deal.input.currentTick) { pending in
            let p = table.slot(pending.index)
            return p.generation.load(ordering: .acquiring) == pending.generation && !p.pointee.deal.bound
        }
    }

    /// The session ends for the core's view at once (a KICK, or the core's CLOSED): unbound, out
    /// of its rooms and of presence, though its connection still sends what was queued for it.
    func sessionEnded(_ s: UnsafeMutablePointer<ConnectionSlot>, _ index: UInt32) {
        guard s.pointee.deal.opened, !s.pointee.deal.ended else { return }
        s.pointee.deal.ended = true
        sessions.open -= 1
        sessions.directory.remove(index)
        publishSessionGauges()
    }

    /// Every tick: sessions the core has not bound within auth_timeout are closed.
    func tickSessions(_ tick: UInt64) {
        sendDropNotices(tick)
        sessions.deadlines?.expire(now: tick) { id in
            let s = table.slot(id.index)
            guard s.holds(id), !s.pointee.deal.bound else { return }
            engine.requestClose(id, cause: .authTimeout)
        }
    }
}
