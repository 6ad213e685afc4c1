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
        if s.pointee.shed {
            engine.counters.add(.overloadedReplies)
            Connection(id: id, deal: self).reply(to: frame, status: GatewayStatus.overloaded)
            return true
        }
        guard let position = route(s, uplinks) else {
            engine.counters.add(.noUpstreamReplies)
            Connection(id: id, deal: self).reply(to: frame, status: GatewayStatus.noUpstream)
            return true
        }
        let link = uplinks.links[position].id!
        let ls = table.slot(link.index)
        guard table.sendRing(link.index).freeCount >= Self.linkRoom else {
            waitForLink(id, s, position, ls, uplinks)
            return false
        }
        let session = SessionID(node: uplinks.node, connection: id)
        if !s.pointee.routed || s.pointee.route != link.packed {
            let opened = LinkMessage.opened(session, link: UInt16(position),
                                            peer: s.pointee.peer)
            composeOnLink(position, uplinks, length: opened.encodedLength) { opened.encode(into: $0) }
            s.pointee.routed = true
            s.pointee.route = link.packed
        }
        let length = Int(frame.header.length)
        composeOnLink(position, uplinks, length: LinkMessage.dataOverhead + length) { p in
            LinkMessage.data(session, clientFrameLength: UInt32(length)).encode(into: p)
            (p + LinkMessage.dataOverhead).copyMemory(from: frame.bytes.baseAddress!, byteCount: length)
        }
        engine.counters.add(.forwardedUp)
        return true
    }

    /// The client's link while it is up; otherwise the next link that is.
    private func route(_ s: UnsafeMutablePointer<ConnectionSlot>, _ uplinks: Uplinks) -> Int? {
        if s.pointee.routed {
            let link = ConnectionID(packed: s.pointee.route)
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
            if let p = uplinks.links[position].pending { pushReserved(p, on: uplinks.links[position].id!) }
            uplinks.markDirty(position)
            d.chunk.retain()
            uplinks.links[position].pending = d
        }
        if chunk != outBlock { pool.release(chunk) }  // a message too big for the block got a chunk of its own
    }

    /// Pushes link output into the ring entry kept free for it (every caller of
    /// composeOnLink checked the room first); a failure would lose link messages.
    func pushReserved(_ d: FrameDescriptor, on link: ConnectionID) {
        let pushed = table.sendRing(link.index).push(d)
        precondition(pushed, "link send ring had no entry for its pending output")
    }

    /// End of a batch: every link's pending output goes on its ring, and Send is told.
    func flushLinks(_ uplinks: Uplinks) {
        for position in uplinks.dirty {
            uplinks.links[position].dirty = false
            guard let link = uplinks.links[position].id else { continue }
            if let d = uplinks.links[position].pending {
                uplinks.links[position].pending = nil
                pushReserved(d, on: link)
            }
            engine.send.postOrRun(table.slot(link.index), link, allowance: &inlineAllowance)
        }
        uplinks.dirty.removeAll(keepingCapacity: true)
    }

    /// The link's ring is full: the client waits in the link's list; Send posts
    /// the link back to Deal when it has made room (the link's dealPaused flag).
    func waitForLink(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>, _ position: Int,
                             _ ls: UnsafeMutablePointer<ConnectionSlot>, _ uplinks: Uplinks) {
        s.pointee.waiting = true
        s.pointee.waitSince = input.currentTick
        s.pointee.waitPosition = UInt16(position)
        s.pointee.waitNext = Uplinks.none
        s.pointee.waitPrev = uplinks.links[position].waitTail
        if uplinks.links[position].waitTail == Uplinks.none {
            uplinks.links[position].waitHead = id.index
        } else {
            table.slot(uplinks.links[position].waitTail).pointee.waitNext = id.index
        }
        uplinks.links[position].waitTail = id.index
        let link = uplinks.links[position].id!
        ls.atomic(\.dealPaused).store(1, ordering: .sequentiallyConsistent)
        // Pairs with Send's fence before it reads dealPaused: room made meanwhile is not missed.
        if table.sendRing(link.index).freeCount >= Self.linkRoom { input.post(ls, link) }
    }

    /// Takes `s` out of its link's wait list.
    func stopWaiting(_ s: UnsafeMutablePointer<ConnectionSlot>, _ uplinks: Uplinks) {
        guard s.pointee.waiting else { return }
        s.pointee.waiting = false
        let position = Int(s.pointee.waitPosition)
        let (prev, next) = (s.pointee.waitPrev, s.pointee.waitNext)
        if prev == Uplinks.none {
            uplinks.links[position].waitHead = next
        } else {
            table.slot(prev).pointee.waitNext = next
        }
        if next == Uplinks.none {
            uplinks.links[position].waitTail = prev
        } else {
            table.slot(next).pointee.waitPrev = prev
        }
    }

    /// Every client waiting on the link is dealt again (it may find room, another link, or none).
    private func wakeWaiters(_ position: Int, _ uplinks: Uplinks) {
        var index = uplinks.links[position].waitHead
        while index != Uplinks.none {
            let s = table.slot(index)
            let next = s.pointee.waitNext
            s.pointee.waiting = false
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
        resumeBlockedLink(s, uplinks)
        guard s.pointee.routed, cause != .upstream else { return }
        let link = ConnectionID(packed: s.pointee.route)
        let position = Int(table.slot(link.index).pointee.linkPosition)
        guard position < uplinks.links.count, uplinks.links[position].id == link else { return }
        let closed = LinkMessage.closed(SessionID(node: uplinks.node, connection: id), cause: UInt8(cause.rawValue))
        // A full link (its clients' traffic, or a core that reads slowly) takes the CLOSED once it drains.
        guard uplinks.links[position].pendingCloses.isEmpty, table.sendRing(link.index).freeCount >= Self.linkRoom else {
            uplinks.links[position].pendingCloses.append(closed)
            let ls = table.slot(link.index)
            ls.atomic(\.dealPaused).store(1, ordering: .sequentiallyConsistent)
            // Pairs with Send's fence before it reads dealPaused: room made meanwhile is not missed.
            if table.sendRing(link.index).freeCount >= Self.linkRoom { input.post(ls, link) }
            return
        }
        composeOnLink(position, uplinks, length: closed.encodedLength) { closed.encode(into: $0) }
    }

    /// The CLOSED messages that waited for room, in order, as far as the room goes.
    private func sendPendingCloses(_ position: Int, _ link: ConnectionID, _ uplinks: Uplinks) {
        var sent = 0
        for closed in uplinks.links[position].pendingCloses {
            guard table.sendRing(link.index).freeCount >= Self.linkRoom else { break }
            composeOnLink(position, uplinks, length: closed.encodedLength) { closed.encode(into: $0) }
            sent += 1
        }
        uplinks.links[position].pendingCloses.removeFirst(sent)
        guard !uplinks.links[position].pendingCloses.isEmpty else { return }
        let ls = table.slot(link.index)
        ls.atomic(\.dealPaused).store(1, ordering: .sequentiallyConsistent)
        if table.sendRing(link.index).freeCount >= Self.linkRoom { input.post(ls, link) }
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
                                                heartbeatMilliseconds: UInt32(engine.config.linkHeartbeatMilliseconds)))
            composeOnLink(position, uplinks, length: hello.encodedLength) { hello.encode(into: $0) }
        }
        if !uplinks.links[position].pendingCloses.isEmpty { sendPendingCloses(position, id, uplinks) }
        if uplinks.links[position].waitHead != Uplinks.none, table.sendRing(id.index).freeCount >= Self.linkRoom {
            wakeWaiters(position, uplinks)
        }
        let ring = table.receiveRing(id.index)
        outer: while ring.count > 0 {
            let d = ring.peek(0).pointee
            var offset = Int(s.pointee.dealOffset)
            while offset < Int(d.length) {
                let start = d.start + offset
                let length = Int(FrameHeader.length(at: start))
                switch linkFrame(start, FrameDescriptor(chunk: d.chunk, offset: d.offset + UInt32(offset),
                                                        length: UInt32(length)), id, position, uplinks) {
                case .next:
                    offset += length
                    bytesMoved &+= length
                case .wait:
                    s.pointee.dealOffset = UInt32(offset)
                    break outer
                case .closeLink:
                    if let downlinks { flushDownRun(downlinks) }
                    return
                }
                uplinks.links[position].lastHeard = now
            }
            s.pointee.dealOffset = 0
            ring.pop(1)
            pool.release(d.chunk)
        }
        if let downlinks { flushDownRun(downlinks) }
        resumeReceive(id, s)
        if ring.count == 0, s.flag(\.inputEnded) { engine.requestClose(id, cause: .peer) }
    }

    enum LinkStep { case next, wait, closeLink }

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
            uplinks.refusals.accepted(UInt64(position))
            uplinks.links[position].up = true
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
        case _ where downlinks != nil:
            return routeDownward(message, d, link, position, uplinks, downlinks!)
        case .data(let session, let length):
            guard let (cid, cs) = client(session, uplinks) else { return .next }
            let inner = FrameDescriptor(chunk: d.chunk, offset: d.offset + UInt32(LinkMessage.dataOverhead),
                                        length: length)
            return deliverDown(inner, cid, cs, position) ? .next : .wait
        case .closed(let session, _):
            guard let (cid, cs) = client(session, uplinks) else { return .next }
            if cs.atomic(\.flushThenClose).compareExchange(expected: 0, desired: CloseCause.upstream.flag,
                                                           ordering: .sequentiallyConsistent).exchanged {
                engine.send.input.post(cs, cid)
            }
            return .next
        case .bind, .unbind, .join, .leave, .push, .kick, .presenceQuery:
            applySessionMessage(message, d, position, uplinks, sessions!)
            return .next
        default:
            return malformedLink(link, position, "\(message) sent downward")
        }
    }

    /// The open client a downward message is for, or nil (counted) when it is stale.
    func client(_ session: SessionID, _ uplinks: Uplinks)
        -> (ConnectionID, UnsafeMutablePointer<ConnectionSlot>)? {
        let id = session.connection
        if session.node == uplinks.node, id.index < UInt32(table.capacity) {
            let s = table.slot(id.index)
            if s.holds(id), s.state == .open,
               s.pointee.kind == SlotKind.client.rawValue {
                return (id, s)
            }
        }
        engine.counters.add(.staleDrops)
        return nil
    }

    /// Puts a client frame from a link on the client's send ring (no copy). A full
    /// ring pauses the link until the client's Send makes room; a client that takes
    /// nothing for write_stall_timeout is closed by Send, which lets the link go on.
    private func deliverDown(_ d: FrameDescriptor, _ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>,
                             _ position: Int) -> Bool {
        guard roomOrPauseLink(s, table.sendRing(id.index), position) else { return false }
        engine.counters.add(.forwardedDown)  // before Send can deliver it: a reader of the stats never lags the client
        enqueue(d, to: id)
        return true
    }

    /// Room for one more descriptor on `s`'s send ring; with none, the link at `position`
    /// pauses, and dealing `s` again (Send made room) resumes it.
    func roomOrPauseLink(_ s: UnsafeMutablePointer<ConnectionSlot>, _ ring: FrameRing, _ position: Int) -> Bool {
        if ring.freeCount > 0 { return true }
        s.pointee.blocksLink = true
        s.pointee.blockedLinkPosition = UInt16(position)
        s.atomic(\.dealPaused).store(1, ordering: .sequentiallyConsistent)
        // Pairs with Send's fence before it reads dealPaused: room made meanwhile is not missed.
        if ring.freeCount < 1 { return false }
        s.atomic(\.dealPaused).store(0, ordering: .relaxed)
        s.pointee.blocksLink = false
        return true
    }

    /// Dealing `s` again after it paused a link: the link goes on.
    func resumeBlockedLink(_ s: UnsafeMutablePointer<ConnectionSlot>, _ uplinks: Uplinks) {
        guard s.pointee.blocksLink else { return }
        s.pointee.blocksLink = false
        if let link = uplinks.links[Int(s.pointee.blockedLinkPosition)].id { input.post(table.slot(link.index), link) }
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
                guard tick &- s.pointee.waitSince > uplinks.maxWaitTicks else { break }
                stopWaiting(s, uplinks)
                s.pointee.shed = true
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
