import Atomics
import Logging

/// The access role with upstream servers (docs/LINK.md): client frames go up as DATA over the
/// client's link, preceded by OPENED the first time on that link; what comes down is delivered by
/// session id; the core shapes users, rooms and push (AccessRole+Sessions.swift). Deal is the
/// only producer of every send ring, clients' and links' alike, so routing needs no lock. Deal-owned.
final class AccessRole: ClientRole {
    unowned(unsafe) let deal: DealStage
    unowned(unsafe) let engine: Engine
    let table: ConnectionTable
    /// The links to the upstream servers.
    let links: Uplinks
    /// The clients' sessions as the core shapes them.
    let sessions: Sessions

    init(deal: DealStage, links: Uplinks) {
        self.deal = deal
        engine = deal.engine
        table = deal.table
        self.links = links
        sessions = Sessions(table: deal.table, config: deal.engine.config)
    }

    // MARK: upward

    /// A waiting client is dealt again when its link has room; a new one opens its session.
    func begin(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>, _ connection: Connection) -> Bool {
        if s.pointee.deal.waiting { return false }
        if !s.pointee.deal.opened { openOrAdopt(id, s) }
        return true
    }

    /// Forwards one client frame; false when it must wait for room on its link (dealing pauses).
    @inline(__always)
    func received(_ frame: Frame, _ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>,
                  _ connection: Connection) -> Bool {
        if ReservedCommand.range.contains(frame.header.cmd) {
            engine.counters.add(.reservedCommandReplies)
            connection.reply(to: frame, status: GatewayStatus.reservedCommand)
            return true
        }
        if s.pointee.deal.shed {
            engine.counters.add(.overloadedReplies)
            connection.reply(to: frame, status: GatewayStatus.overloaded)
            return true
        }
        guard let position = route(s) else {
            engine.counters.add(.noUpstreamReplies)
            connection.reply(to: frame, status: GatewayStatus.noUpstream)
            return true
        }
        guard let link = links.links[position].id else { return true }  // nextUp() names links that are up
        let length = Int(frame.header.length)
        if length > links.links[position].peerMaxFrame {
            engine.counters.add(.tooLargeReplies)
            connection.reply(to: frame, status: GatewayStatus.tooLarge)
            return true
        }
        let ls = table.slot(link.index)
        guard links.hasRoom(link, ls) else {
            links.pause(id, s, on: link, at: position, ls)
            return false
        }
        let session = sessionID(id, s)
        if !s.pointee.deal.routed || s.pointee.deal.route != link.packed {
            if s.pointee.deal.moveState == MoveState.owed.rawValue {
                announceMoved(id, s, on: position)  // adopted while no link was up
            } else {
                let opened = LinkMessage.opened(session, link: UInt16(position),
                                                peer: s.pointee.monitor.peer, transport: s.pointee.monitor.transport)
                links.compose(on: position, length: opened.encodedLength) { opened.encode(into: $0) }
                leaveRouteList(s)
                s.pointee.deal.routed = true
                s.pointee.deal.route = link.packed
                joinRouteList(id.index, s, position)
            }
        }
        guard let bytes = frame.bytes.baseAddress else { return true }  // a frame has at least its header
        links.compose(on: position, length: LinkMessage.dataOverhead + length) { p in
            LinkMessage.data(session, clientFrameLength: UInt32(length)).encode(into: p)
            (p + LinkMessage.dataOverhead).copyMemory(from: bytes, byteCount: length)
        }
        // Not &+=: an inout access spans the whole record.
        s.pointee.deal.routeFrames = s.pointee.deal.routeFrames &+ 1
        s.pointee.deal.lastUpSeq = frame.header.seq
        engine.counters.add(.forwardedUp)
        return true
    }

    /// The client's link while it is up; otherwise the next link that is.
    private func route(_ s: UnsafeMutablePointer<ConnectionSlot>) -> Int? {
        if s.pointee.deal.routed, let position = routedPosition(s), links.links[position].up {
            return position
        }
        return links.nextUp()
    }

    /// The position of the link `s` was announced on, while that link is the same connection.
    func routedPosition(_ s: UnsafeMutablePointer<ConnectionSlot>) -> Int? {
        let link = ConnectionID(packed: s.pointee.deal.route)
        let position = Int(table.slot(link.index).pointee.monitor.linkPosition)
        guard position < links.links.count, links.links[position].id == link else { return nil }
        return position
    }

    // MARK: downward

    /// A link's turn: what comes down is delivered to its clients.
    func dealUplink(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) {
        links.turn(id, s, downward: { message, d, link, position in deliver(message, d, link, position) },
                   walked: { if links.upCount > 0 { announceOwedMoves() } })
    }

    /// A message past HELLO and heartbeats that came down link `position`.
    private func deliver(_ message: LinkMessage, _ d: FrameDescriptor, _ link: ConnectionID,
                         _ position: Int) -> Uplinks.Step {
        switch message {
        case .data(let session, let length):
            guard let (cid, _) = client(session) else { return .next }
            // Counted before Send can deliver it: a reader of the stats never lags the client.
            engine.counters.add(.forwardedDown)
            deal.enqueue(FrameDescriptor(chunk: d.chunk, offset: d.offset + UInt32(LinkMessage.dataOverhead),
                                         length: length), to: cid)
            return .next
        case .closed(let session, _):
            guard let (cid, cs) = client(session) else { return .next }
            deal.closeAfterReplies(cid, cs, cause: .upstream)
            sessionEnded(cs, cid.index)
            return .next
        case .bind, .unbind, .join, .leave, .push, .kick, .presenceQuery:
            applySessionMessage(message, d, position)
            return .next
        case .move(let session, .ready, _, _, _):
            guard let (cid, cs) = client(session) else { return .next }
            moveAnswered(cid, cs)
            return .next
        default:
            return links.malformed(link, position, "\(message) sent downward")
        }
    }

    /// The open client a downward message is for, or nil (counted) when it is stale: closed, a
    /// session the core ended (KICK, CLOSED) whose connection is finishing, or one Deal has passed on
    /// in a hand-over. An id of another node may be an adopted session's old one.
    func client(_ session: SessionID) -> (ConnectionID, UnsafeMutablePointer<ConnectionSlot>)? {
        if let id = session.node == links.node ? session.connection : aliasedSlot(session),
           id.index < UInt32(table.capacity) {
            let s = table.slot(id.index)
            if s.holds(id), s.state == .open, s.kind == .client, !s.pointee.deal.ended, !s.passedOnForHandover {
                return (id, s)
            }
        }
        engine.counters.add(.staleDrops)
        return nil
    }

    // MARK: ends

    /// A forwarding client closed: the core hears CLOSED once, unless it asked for the close
    /// itself or the link the client was announced on is gone (the core lost the session with it);
    /// its session ends here.
    func closed(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>, cause: CloseCause) {
        links.stopWaiting(s)
        leaveRouteList(s)
        // A session handed over is the new process's: the core heard MOVING, or does not hold it.
        if s.pointee.deal.routed, cause != .upstream, cause != .handedOver, let position = routedPosition(s) {
            let closed = LinkMessage.closed(sessionID(id, s), cause: UInt8(cause.rawValue))
            // A full link (its clients' traffic, or a core that reads slowly) keeps it in its backlog.
            links.compose(on: position, length: closed.encodedLength) { closed.encode(into: $0) }
        }
        sessionEnded(s, id.index)
        dropAlias(id, s)
    }

    /// A link's close: its clients move to other links at their next frame (Uplinks.closed).
    func linkClosed(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>, cause: CloseCause) {
        links.closed(id, s, cause: cause) { position in tellUpstreamLost(position) }
    }

    func tick(_ tick: UInt64) {
        links.tick(tick)
        tickSessions(tick)
    }
}
