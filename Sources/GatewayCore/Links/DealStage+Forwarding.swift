import Atomics
import Logging

/// The access role on the Deal stage (docs/LINK.md): client frames go up as
/// DATA over the client's link, preceded by OPENED the first time on that link;
/// link frames come down and are delivered by session id. Deal is the only
/// producer of every send ring, clients' and links' alike, so routing needs no lock.
extension DealStage {
    /// Link output needs one ring entry for the pending descriptor plus one per message it may start.
    static let linkRoom = 3

    // MARK: upward

    /// Forwards one client frame; false when it must wait for room on its link (dealing pauses).
    func forwardUp(_ frame: Frame, _ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>,
                   _ uplinks: Uplinks) -> Bool {
        if ReservedCommand.range.contains(frame.header.cmd) {
            engine.counters.add(.reservedCommandReplies)
            Connection(id: id, deal: self).reply(to: frame, status: GatewayStatus.reservedCommand)
            return true
        }
        if s.pointee.deal.shed {
            engine.counters.add(.overloadedReplies)
            Connection(id: id, deal: self).reply(to: frame, status: GatewayStatus.overloaded)
            return true
        }
        guard let position = route(s, uplinks) else {
            engine.counters.add(.noUpstreamReplies)
            Connection(id: id, deal: self).reply(to: frame, status: GatewayStatus.noUpstream)
            return true
        }
        guard let link = uplinks.links[position].id else { return true }  // nextUp() names links that are up
        let length = Int(frame.header.length)
        if length > uplinks.links[position].peerMaxFrame {
            engine.counters.add(.tooLargeReplies)
            Connection(id: id, deal: self).reply(to: frame, status: GatewayStatus.tooLarge)
            return true
        }
        let ls = table.slot(link.index)
        guard linkHasRoom(link, ls) else {
            waitForLink(id, s, position, ls, uplinks)
            return false
        }
        let session = SessionID(node: uplinks.node, connection: id)
        if !s.pointee.deal.routed || s.pointee.deal.route != link.packed {
            let opened = LinkMessage.opened(session, link: UInt16(position),
                                            peer: s.pointee.peer, transport: s.pointee.transport)
            composeOnLink(position, uplinks, length: opened.encodedLength) { opened.encode(into: $0) }
            leaveRouteList(s, uplinks)
            s.pointee.deal.routed = true
            s.pointee.deal.route = link.packed
            joinRouteList(id.index, s, position, uplinks)
        }
        composeOnLink(position, uplinks, length: LinkMessage.dataOverhead + length) { p in
            LinkMessage.data(session, clientFrameLength: UInt32(length)).encode(into: p)
            (p + LinkMessage.dataOverhead).copyMemory(from: frame.bytes.baseAddress!, byteCount: length)
        }
        s.pointee.deal.routeFrames = s.pointee.deal.routeFrames &+ 1  // not &+=: an inout access spans the whole record
        s.pointee.deal.lastUpSeq = frame.header.seq
        engine.counters.add(.forwardedUp)
        return true
    }

    // MARK: the clients announced on each link

    private func joinRouteList(_ index: UInt32, _ s: UnsafeMutablePointer<ConnectionSlot>, _ position: Int,
                               _ uplinks: Uplinks) {
        let head = uplinks.links[position].routedHead
        s.pointee.deal.routePrev = Uplinks.none
        s.pointee.deal.routeNext = head
        s.pointee.deal.routeFrames = 0
        if head != Uplinks.none { table.slot(head).pointee.deal.routePrev = index }
        uplinks.links[position].routedHead = index
    }

    /// Takes `s` off the list of the link it was announced on, while that link is the same connection
    /// (a link that died took its list with it).
    private func leaveRouteList(_ s: UnsafeMutablePointer<ConnectionSlot>, _ uplinks: Uplinks) {
        guard s.pointee.deal.routed else { return }
        let link = ConnectionID(packed: s.pointee.deal.route)
        let position = Int(table.slot(link.index).pointee.linkPosition)
        guard position < uplinks.links.count, uplinks.links[position].id == link else { return }
        let (prev, next) = (s.pointee.deal.routePrev, s.pointee.deal.routeNext)
        if prev == Uplinks.none {
            uplinks.links[position].routedHead = next
        } else {
            table.slot(prev).pointee.deal.routeNext = next
        }
        if next != Uplinks.none { table.slot(next).pointee.deal.routePrev = prev }
    }

    /// A link died: every client that sent frames on it is told once, with the seq of the last one
    /// (docs/PROTOCOL.md, upstream_lost), since the core may never have answered them.
    private func tellUpstreamLost(_ position: Int, _ uplinks: Uplinks) {
        var index = uplinks.links[position].routedHead
        var told: UInt64 = 0
        while index != Uplinks.none {
            let s = table.slot(index)
            let next = s.pointee.deal.routeNext
            if s.pointee.deal.routeFrames > 0, s.state == .open, !s.endings.isFlushing {
                let id = ConnectionID(index: index, generation: s.generation.load(ordering: .acquiring))
                let header = FrameHeader(length: 0, seq: s.pointee.deal.lastUpSeq, cmd: ReservedCommand.upstreamLost,
                                         status: GatewayStatus.upstreamLost, uid: 0)
                compose(header, body: UnsafeRawBufferPointer(start: nil, count: 0), to: id)
                s.pointee.deal.routeFrames = 0
                told += 1
            }
            index = next
        }
        uplinks.links[position].routedHead = Uplinks.none
        engine.counters.add(.upstreamLostNotices, told)
    }

    /// The client's link while it is up; otherwise the next link that is.
    private func route(_ s: UnsafeMutablePointer<ConnectionSlot>, _ uplinks: Uplinks) -> Int? {
        if s.pointee.deal.routed {
            let link = ConnectionID(packed: s.pointee.deal.route)
            let position = Int(table.slot(link.index).pointee.linkPosition)
            if position < uplinks.links.count, uplinks.links[position].up, uplinks.links[position].id == link {
                return position
            }
        }
        return uplinks.nextUp()
    }

    /// Writes a link message into the reply block and appends it to the link's pending output.
    func composeOnLink(_ position: Int, _ uplinks: Uplinks, length: Int,
                               _ write: (UnsafeMutableRawPointer) -> Void) {
        let (chunk, offset) = reserve(length)
        write(chunk.bytes + offset)
        let d = FrameDescriptor(chunk: chunk, offset: UInt32(offset), length: UInt32(length))
        if var p = uplinks.links[position].pending, p.chunk == d.chunk, p.offset + p.length == d.offset {
            p.length += d.length
            uplinks.links[position].pending = p
        } else {
            if let p = uplinks.links[position].pending, let link = uplinks.links[position].id { pushLinkOutput(p, on: link) }
            uplinks.markDirty(position)
            d.chunk.retain()
            uplinks.links[position].pending = d
        }
        if chunk != outBlock { pool.release(chunk) }  // a message too big for the block got a chunk of its own
    }

    /// Link output goes on the link's ring or backlog. Past the link's byte bound the
    /// upper side has taken nothing for that long: the link is closed as a slow consumer.
    func pushLinkOutput(_ d: FrameDescriptor, on link: ConnectionID) {
        let ls = table.slot(link.index)
        guard queueOutput(d, link, ls) else {
            engine.logger.warning("link \(link) to \(ls.pointee.peer): over \(queueBound(ls)) bytes queued, closing")
            engine.requestClose(link, cause: .slowConsumer)
            return
        }
    }

    /// Room for a client frame going up: clients wait (in the link's list) while the link's
    /// output is backed up, so a slow core pushes back on its clients, never on memory.
    func linkHasRoom(_ link: ConnectionID, _ ls: UnsafeMutablePointer<ConnectionSlot>) -> Bool {
        ls.pointee.deal.backlog.isEmpty && table.sendRing(link.index).freeCount >= Self.linkRoom
    }

    /// End of a batch: every link's pending output goes on its ring, and Send is told.
    func flushLinks(_ uplinks: Uplinks) {
        for position in uplinks.dirty {
            uplinks.links[position].dirty = false
            guard let link = uplinks.links[position].id else { continue }
            if let d = uplinks.links[position].pending {
                uplinks.links[position].pending = nil
                pushLinkOutput(d, on: link)
            }
            engine.send.postOrRun(table.slot(link.index), link, allowance: &inlineAllowance)
        }
        uplinks.dirty.removeAll(keepingCapacity: true)
    }

    /// The link's ring is full: the client waits in the link's list; Send posts
    /// the link back to Deal when it has made room (the link's dealPaused flag).
    func waitForLink(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>, _ position: Int,
                             _ ls: UnsafeMutablePointer<ConnectionSlot>, _ uplinks: Uplinks) {
        s.pointee.deal.waiting = true
        s.pointee.deal.waitSince = input.currentTick
        s.pointee.deal.waitPosition = UInt16(position)
        s.pointee.deal.waitNext = Uplinks.none
        s.pointee.deal.waitPrev = uplinks.links[position].waitTail
        if uplinks.links[position].waitTail == Uplinks.none {
            uplinks.links[position].waitHead = id.index
        } else {
            table.slot(uplinks.links[position].waitTail).pointee.deal.waitNext = id.index
        }
        uplinks.links[position].waitTail = id.index
        let link = uplinks.links[position].id!
        ls.atomic(\.dealPaused).store(1, ordering: .sequentiallyConsistent)
        // Pairs with Send's fence before it reads dealPaused: room made meanwhile is not missed.
        if linkHasRoom(link, ls) { input.post(ls, link) }
    }

    /// Takes `s` out of its link's wait list.
    func stopWaiting(_ s: UnsafeMutablePointer<ConnectionSlot>, _ uplinks: Uplinks) {
        guard s.pointee.deal.waiting else { return }
        s.pointee.deal.waiting = false
        let position = Int(s.pointee.deal.waitPosition)
        let (prev, next) = (s.pointee.deal.waitPrev, s.pointee.deal.waitNext)
        if prev == Uplinks.none {
            uplinks.links[position].waitHead = next
        } else {
            table.slot(prev).pointee.deal.waitNext = next
        }
        if next == Uplinks.none {
            uplinks.links[position].waitTail = prev
        } else {
            table.slot(next).pointee.deal.waitPrev = prev
        }
    }

    /// Every client waiting on the link is dealt again (it may find room, another link, or none).
    private func wakeWaiters(_ position: Int, _ uplinks: Uplinks) {
        var index = uplinks.links[position].waitHead
        while index != Uplinks.none {
            let s = table.slot(index)
            let next = s.pointee.deal.waitNext
            s.pointee.deal.waiting = false
            input.post(s, ConnectionID(index: index, generation: s.generation.load(ordering: .acquiring)))
            index = next
        }
        uplinks.links[position].waitHead = Uplinks.none
        uplinks.links[position].waitTail = Uplinks.none
    }

    /// A forwarding client closed: the core hears CLOSED once, unless it asked for the close
    /// itself or the link the client was announced on is gone (the core lost the session with it).
    func forwardClose(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>, cause: CloseCause,
                      _ uplinks: Uplinks) {
        stopWaiting(s, uplinks)
        leaveRouteList(s, uplinks)
        guard s.pointee.deal.routed, cause != .upstream else { return }
        let link = ConnectionID(packed: s.pointee.deal.route)
        let position = Int(table.slot(link.index).pointee.linkPosition)
        guard position < uplinks.links.count, uplinks.links[position].id == link else { return }
        let closed = LinkMessage.closed(SessionID(node: uplinks.node, connection: id), cause: UInt8(cause.rawValue))
        // A full link (its clients' traffic, or a core that reads slowly) keeps it in its backlog.
        composeOnLink(position, uplinks, length: closed.encodedLength) { closed.encode(into: $0) }
    }

    // MARK: the link itself

    /// A link's turn on Deal: HELLO once connected, its waiters once it has room, then its frames.
    func dealUplink(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>, _ uplinks: Uplinks) {
        let position = Int(s.pointee.linkPosition)
        let now = input.currentTick
        if uplinks.links[position].id != id {
            uplinks.links[position] = Uplinks.Link(id: id, lastHeard: now, lastBeat: now)
            let role: NodeRole = downlinks == nil ? .access : .aggregation
            let hello = LinkMessage.hello(.init(role: role, node: uplinks.node, link: UInt16(position),
                                                heartbeatMilliseconds: UInt32(engine.config.linkHeartbeatMilliseconds),
                                                maxFrame: UInt32(engine.config.maxFrame),
                                                maxQueuedBytes: UInt32(clamping: live.maxQueuedBytes)))
            composeOnLink(position, uplinks, length: hello.encodedLength) { hello.encode(into: $0) }
        }
        drainBacklog(id, s)
        if uplinks.links[position].waitHead != Uplinks.none, linkHasRoom(id, s) {
            wakeWaiters(position, uplinks)
        }
        let (end, _) = walkFrames(id, s) { d, _, _ in
            switch linkFrame(d.start, d, id, position, uplinks) {
            case .next:
                uplinks.links[position].lastHeard = now
                return .next
            case .closeLink:
                return .abandon
            }
        }
        if let downlinks { flushDownRun(downlinks) }
        if end == .abandoned { return }
        resumeReceive(id, s)
        if table.receiveRing(id.index).count == 0, s.endings.hasInputEnded { engine.requestClose(id, cause: .peer) }
    }

    enum LinkStep { case next, closeLink }

    private func linkFrame(_ p: UnsafeMutableRawPointer, _ d: FrameDescriptor, _ link: ConnectionID, _ position: Int,
                           _ uplinks: Uplinks) -> LinkStep {
        let message: LinkMessage
        switch LinkMessage.decode(p, maxFrame: engine.config.maxFrame) {
        case .success(let m): message = m
        case .failure(let error): return malformedLink(link, position, "\(error)")
        }
        switch message {
        case .hello(let hello) where !uplinks.links[position].up:
            guard hello.status == LinkMessage.HelloStatus.accepted.rawValue, hello.version == LinkMessage.version else {
                if uplinks.refusals.shouldLog(UInt64(position), status: hello.status) {
                    let why = LinkMessage.HelloStatus(rawValue: hello.status).map { "\($0)" }
                        ?? "status \(hello.status)"
                    engine.logger.warning(
                        "\(linkName(position)): refused by node \(hello.node): \(why), version \(hello.version)")
                }
                engine.requestClose(link, cause: .linkRefused)
                return .closeLink
            }
            guard hello.maxFrame >= FrameHeader.size else {
                return malformedLink(link, position, "HELLO with max_frame \(hello.maxFrame)")
            }
            uplinks.refusals.accepted(UInt64(position))
            uplinks.links[position].up = true
            uplinks.links[position].peerMaxFrame = Int(hello.maxFrame)
            uplinks.upCount += 1
            engine.counters.set(.linksUp, UInt64(uplinks.upCount))
            engine.logger.info("\(linkName(position)): up (node \(hello.node))")
            return .next
        case _ where !uplinks.links[position].up:
            return malformedLink(link, position, "\(message) before HELLO")
        case .heartbeat:
            let sent = uplinks.links[position].beatSentAt
            if sent != 0 {
                engine.roundTrips.record(nanoseconds: MonotonicClock.nanoseconds() &- sent)
                uplinks.links[position].beatSentAt = 0
            }
            return .next
        default:
            break
        }
        // Past HELLO and heartbeats: an aggregation server routes it on, an access node delivers it.
        if let downlinks { return routeDownward(message, d, link, position, uplinks, downlinks) }
        switch message {
        case .data(let session, let length):
            guard let (cid, _) = client(session, uplinks) else { return .next }
            // Counted before Send can deliver it: a reader of the stats never lags the client.
            engine.counters.add(.forwardedDown)
            enqueue(FrameDescriptor(chunk: d.chunk, offset: d.offset + UInt32(LinkMessage.dataOverhead),
                                    length: length), to: cid)
            return .next
        case .closed(let session, _):
            guard let (cid, cs) = client(session, uplinks) else { return .next }
            closeAfterReplies(cid, cs, cause: .upstream)
            if let sessions { sessionEnded(cs, cid.index, sessions) }
            return .next
        case .bind, .unbind, .join, .leave, .push, .kick, .presenceQuery:
            guard let sessions else { return malformedLink(link, position, "\(message) to a node without sessions") }
            applySessionMessage(message, d, position, uplinks, sessions)
            return .next
        default:
            return malformedLink(link, position, "\(message) sent downward")
        }
    }

    /// The open client a downward message is for, or nil (counted) when it is stale: closed, or a
    /// session the core ended (KICK, CLOSED) whose connection is finishing.
    func client(_ session: SessionID, _ uplinks: Uplinks)
        -> (ConnectionID, UnsafeMutablePointer<ConnectionSlot>)? {
        let id = session.connection
        if session.node == uplinks.node, id.index < UInt32(table.capacity) {
            let s = table.slot(id.index)
            if s.holds(id), s.state == .open, s.kind == .client, !s.pointee.deal.ended {
                return (id, s)
            }
        }
        engine.counters.add(.staleDrops)
        return nil
    }

    func malformedLink(_ link: ConnectionID, _ position: Int, _ why: String) -> LinkStep {
        engine.logger.warning("\(linkName(position)): closing, malformed: \(why)")
        engine.requestClose(link, cause: .protocolError)
        return .closeLink
    }

    private func linkName(_ position: Int) -> String { uplinks?.name(position) ?? "link \(position)" }

    /// A link is gone: its clients move to other links at their next frame.
    func uplinkClosed(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>, cause: CloseCause,
                      _ uplinks: Uplinks) {
        // Counted here, once, whether Receive's cutter or Deal's decoder found the bad frame.
        if cause == .protocolError { engine.counters.add(.linkMalformed) }
        let position = Int(s.pointee.linkPosition)
        guard position < uplinks.links.count, uplinks.links[position].id == id else { return }
        if uplinks.links[position].up {
            uplinks.upCount -= 1
            engine.counters.set(.linksUp, UInt64(uplinks.upCount))
            engine.logger.warning("\(linkName(position)): down")
        }
        if let p = uplinks.links[position].pending { pool.release(p.chunk) }
        wakeWaiters(position, uplinks)
        tellUpstreamLost(position, uplinks)
        if let downlinks { closeDownlinks(of: id, downlinks) }
        uplinks.links[position] = Uplinks.Link()
        engine.counters.add(.linkCloses)
    }

    /// Every tick: heartbeats on links that are up, the deadline on every link, and
    /// max_queue_wait on the clients waiting for one (oldest first: the list is in order).
    func tickLinks(_ tick: UInt64, _ uplinks: Uplinks) {
        for position in uplinks.links.indices {
            guard let link = uplinks.links[position].id else { continue }
            while uplinks.maxWaitTicks > 0, uplinks.links[position].waitHead != Uplinks.none {
                let index = uplinks.links[position].waitHead
                let s = table.slot(index)
                guard tick &- s.pointee.deal.waitSince > uplinks.maxWaitTicks else { break }
                stopWaiting(s, uplinks)
                s.pointee.deal.shed = true
                input.post(s, ConnectionID(index: index, generation: s.generation.load(ordering: .acquiring)))
            }
            // Frames still waiting here to be dealt (a full client paused the link) are news enough.
            if tick &- uplinks.links[position].lastHeard > 3 * uplinks.heartbeatTicks,
               table.receiveRing(link.index).count == 0 {
                engine.logger.warning("\(linkName(position)): nothing heard for 3 heartbeats, closing")
                uplinks.links[position].lastHeard = tick  // asked once
                engine.requestClose(link, cause: .idle)
                continue
            }
            if uplinks.links[position].up, tick &- uplinks.links[position].lastBeat >= uplinks.heartbeatTicks,
               table.sendRing(link.index).freeCount >= Self.linkRoom {
                uplinks.links[position].lastBeat = tick
                uplinks.links[position].beatSentAt = MonotonicClock.nanoseconds()
                let beat = LinkMessage.heartbeat
                composeOnLink(position, uplinks, length: beat.encodedLength) { beat.encode(into: $0) }
            }
        }
        flushLinks(uplinks)
    }
}
