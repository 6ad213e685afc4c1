import Atomics
import Logging

/// The aggregation role on the Deal stage (docs/LINK.md, routing): what a lower
/// link sends goes up unchanged over the upper link chosen at its HELLO, as
/// descriptors of the blocks it was read into (no copy); what comes down is
/// routed by the session's node to one of that node's lower links, also without
/// a copy. HELLO and HEARTBEAT are answered here and go no further.
extension DealStage {
    // MARK: upward: a lower link's turn

    private enum LowerStep { case forward(isData: Bool), heartbeat, hello(LinkMessage.Hello), skip, malformed(String) }

    func dealDownlink(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>, _ uplinks: Uplinks,
                      _ downlinks: Downlinks) {
        let now = input.currentTick
        if downlinks.links[id.index]?.id != id {
            downlinks.links[id.index] = Downlinks.Link(id: id, heartbeatTicks: uplinks.heartbeatTicks, lastHeard: now)
        }
        drainBacklog(id, s)
        if s.pointee.deal.waiting { return }  // dealt again when its upper link has room
        if table.receiveRing(id.index).count > 0 { downlinks.links[id.index]?.lastHeard = now }
        // The run of checked messages since the last one answered here, forwarded up as one descriptor.
        var runStart = Int(s.pointee.deal.dealOffset)
        var runData = 0
        let (end, _) = walkFrames(id, s, frame: { d, offset, whole in
            guard let link = downlinks.links[id.index] else { return .abandon }  // set when its turn began
            switch lowerFrame(d.start, link) {
            case .forward(let isData):
                if isData { runData += 1 }
            case .heartbeat:
                // Answered here: what came before it goes up first.
                guard forwardRun(whole, runStart..<offset, runData, s, id, uplinks, downlinks) else {
                    return .pause(at: runStart)
                }
                enqueue(d, to: id)
                (runStart, runData) = (offset + Int(d.length), 0)
            case .hello(let hello):
                answerHello(hello, id, s, uplinks, downlinks)
                runStart = offset + Int(d.length)
            case .skip:
                runStart = offset + Int(d.length)
            case .malformed(let why):
                let node = downlinks.links[id.index]?.node ?? 0
                engine.logger.warning("link from node \(node) (\(id)): closing, malformed: \(why)")
                engine.requestClose(id, cause: .protocolError)
                return .abandon
            }
            return .next
        }, descriptorEnd: { whole, offset in
            guard forwardRun(whole, runStart..<offset, runData, s, id, uplinks, downlinks) else {
                return .pause(at: runStart)
            }
            (runStart, runData) = (0, 0)
            return .next
        })
        if end == .abandoned { return }
        resumeReceive(id, s)
        if table.receiveRing(id.index).count == 0, let cause = s.endings.inputEnded {
            closeAfterReplies(id, s, cause: cause)
        }
    }

    /// Checks one message from a lower link: it must be well formed, follow HELLO, and
    /// carry sessions of the node that sent HELLO (an access node speaks only for itself).
    private func lowerFrame(_ p: UnsafeMutableRawPointer, _ link: Downlinks.Link) -> LowerStep {
        let message: LinkMessage
        switch LinkMessage.decode(p, maxFrame: engine.config.maxFrame) {
        case .success(let m): message = m
        case .failure(let error): return .malformed("\(error)")
        }
        if link.refused { return .skip }  // closing once its refusal is sent
        switch message {
        case .hello(let hello) where !link.up: return .hello(hello)
        case _ where !link.up: return .malformed("\(message) before HELLO")
        case .hello: return .malformed("a second HELLO")
        case .heartbeat: return .heartbeat
        case .opened(let session, _, _, _), .closed(let session, _), .pushDropped(let session, _):
            return ownSession(session, link) ? .forward(isData: false) : .malformed("a session of node \(session.node)")
        case .data(let session, _):
            return ownSession(session, link) ? .forward(isData: true) : .malformed("a session of node \(session.node)")
        case .linkDown:
            return link.role == NodeRole.aggregation.rawValue ? .forward(isData: false) : .malformed("LINK_DOWN")
        case .presence(_, let node, _):
            return link.role == NodeRole.aggregation.rawValue || node == link.node
                ? .forward(isData: false) : .malformed("PRESENCE of node \(node)")
        case .bind, .unbind, .join, .leave, .push, .kick, .presenceQuery:
            return .malformed("\(message) sent upward")
        }
    }

    private func ownSession(_ session: SessionID, _ link: Downlinks.Link) -> Bool {
        link.role == NodeRole.aggregation.rawValue || session.node == link.node
    }

    /// Puts `range` of `d` (whole, checked link messages) on the upper link's
    /// send ring as one descriptor; false when that link has no room (the lower
    /// link waits in its list, and its reading pauses once its own ring fills).
    private func forwardRun(_ d: FrameDescriptor, _ range: Range<Int>, _ dataFrames: Int,
                            _ s: UnsafeMutablePointer<ConnectionSlot>, _ id: ConnectionID,
                            _ uplinks: Uplinks, _ downlinks: Downlinks) -> Bool {
        guard !range.isEmpty else { return true }
        guard let link = downlinks.links[id.index] else { return false }  // set when its turn began
        let position = link.upper
        guard uplinks.links[position].id == link.upperID else {
            // Its upper link is gone: this link is being closed (closeDownlinks), and what it sent with it.
            engine.requestClose(id, cause: .upstream)
            return false
        }
        let ls = table.slot(link.upperID.index)
        guard linkHasRoom(link.upperID, ls) else {
            waitForLink(id, s, position, ls, uplinks)
            return false
        }
        if let p = uplinks.links[position].pending {  // composed output (heartbeats, LINK_DOWN) keeps its place
            uplinks.links[position].pending = nil
            pushLinkOutput(p, on: link.upperID)
        }
        d.chunk.retain()
        pushLinkOutput(FrameDescriptor(chunk: d.chunk, offset: d.offset + UInt32(range.lowerBound),
                                       length: UInt32(range.count)), on: link.upperID)
        uplinks.markDirty(position)
        engine.counters.add(.forwardedUp, UInt64(dataFrames))
        return true
    }

    /// Answers a lower link's HELLO: accepted with an upper link to carry it, or
    /// refused (then closed once the answer is sent).
    private func answerHello(_ hello: LinkMessage.Hello, _ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>,
                             _ uplinks: Uplinks, _ downlinks: Downlinks) {
        var status = LinkMessage.HelloStatus.accepted
        var upper: Int?
        var why = ""
        if hello.version != LinkMessage.version {
            status = .unsupportedVersion
            why = "version \(hello.version), this server speaks \(LinkMessage.version)"
        } else if hello.role != NodeRole.access.rawValue && hello.role != NodeRole.aggregation.rawValue {
            status = .roleRefused
            why = "role \(hello.role): only access and aggregation nodes connect upward"
        } else if let old = downlinks.routes[hello.node]?
            .first(where: { downlinks.links[$0.index]?.number == hello.link }) {
            // The node reconnected a link this server still holds: the old one goes (its LINK_DOWN
            // goes up first), and the node's retry finds the number free.
            status = .notReady
            why = "its link \(hello.link) is still up here; closing that one"
            engine.requestClose(old.id, cause: .peer)
        } else if let chosen = downlinks.chooseUpper(node: hello.node, among: uplinks) {
            upper = chosen
        } else {
            status = .notReady
            why = "no upstream link up"
        }
        if status == .accepted, hello.maxFrame < FrameHeader.size {
            status = .roleRefused
            why = "max_frame \(hello.maxFrame) in its HELLO"
        }
        var answer = LinkMessage.Hello(role: .aggregation, node: uplinks.node, link: hello.link,
                                       heartbeatMilliseconds: hello.heartbeatMilliseconds,
                                       maxFrame: UInt32(engine.config.maxFrame),
                                       maxQueuedBytes: UInt32(clamping: live.maxQueuedBytes))
        answer.status = status.rawValue
        sendLinkMessage(.hello(answer), to: id)
        guard let upper, let upperID = uplinks.links[upper].id else {
            engine.counters.add(.linksRefused)
            if downlinks.refusals.shouldLog(UInt64(hello.node), status: status.rawValue) {
                engine.logger.warning("refusing link \(hello.link) from node \(hello.node): \(status), \(why)")
            }
            downlinks.links[id.index]?.refused = true
            closeAfterReplies(id, s, cause: .linkRefused)
            return
        }
        guard var link = downlinks.links[id.index] else { return }  // set when its turn began
        link.up = true
        link.node = hello.node
        link.number = hello.link
        link.role = hello.role
        link.maxFrame = Int(hello.maxFrame)
        link.heartbeatTicks = max(1, UInt64(hello.heartbeatMilliseconds) / UInt64(engine.config.tickMilliseconds))
        link.upper = upper
        link.upperID = upperID
        downlinks.links[id.index] = link
        downlinks.addRoute(link)
        downlinks.refusals.accepted(UInt64(hello.node))
        engine.counters.set(.downlinksUp, UInt64(downlinks.upCount))
        engine.logger.info("link \(hello.link) from node \(hello.node) up, carried on upstream link \(upper)")
    }

    /// Composes a link message into the reply block and queues it for `id`.
    private func sendLinkMessage(_ message: LinkMessage, to id: ConnectionID) {
        let (chunk, offset) = reserve(message.encodedLength)
        message.encode(into: chunk.bytes + offset)
        enqueue(FrameDescriptor(chunk: chunk, offset: UInt32(offset), length: UInt32(message.encodedLength)), to: id)
    }

    // MARK: downward

    /// A message that came down upper link `position`: session messages go to their
    /// node's link, tree-wide ones to one link of every node (of the one node for scope node).
    func routeDownward(_ message: LinkMessage, _ d: FrameDescriptor, _ link: ConnectionID, _ position: Int,
                       _ uplinks: Uplinks, _ downlinks: Downlinks) -> LinkStep {
        switch message {
        case .data(let session, let inner):
            routeDown(d, session, isData: true, inner: Int(inner), from: position, downlinks)
        case .closed(let session, _), .bind(let session, _), .unbind(let session), .join(let session, _),
             .leave(let session, _):
            routeDown(d, session, isData: false, inner: 0, from: position, downlinks)
        case .push(let tree, let inner):
            fanOut(d, tree, inner: Int(inner), downlinks)
        case .kick(let tree), .presenceQuery(let tree):
            fanOut(d, tree, inner: 0, downlinks)
        default:
            return malformedLink(link, position, "\(message) sent downward")
        }
        return .next
    }

    /// A tree-wide message, the first time it comes (by any path): a copy of the same
    /// bytes on one link of every lower node, each on its own output (a slow one delays no other).
    private func fanOut(_ d: FrameDescriptor, _ tree: LinkMessage.TreeWide, inner: Int, _ downlinks: Downlinks) {
        guard downlinks.filter.isNew(origin: tree.origin, seq: tree.seq) else {
            engine.counters.add(.duplicates)
            return
        }
        flushDownRun(downlinks)
        for (node, routes) in downlinks.routes where tree.scope != .node || node == tree.target {
            guard let r = downlinks.lowest(routes) else { continue }
            guard takesFrame(inner, r, downlinks) else { continue }
            d.chunk.retain()
            pushLinkOutput(d, on: r.id)
            engine.send.input.post(table.slot(r.index), r.id)
        }
        downlinks.filter.mark(origin: tree.origin, seq: tree.seq)
    }

    /// Routes one DATA or CLOSED that came down upper link `position` to a lower link of the
    /// session's node, extending the run of frames for that link when it follows in
    /// memory. No link for the node: a stale drop.
    func routeDown(_ d: FrameDescriptor, _ session: SessionID, isData: Bool, inner: Int, from position: Int,
                   _ downlinks: Downlinks) {
        guard let route = downlinks.route(node: session.node, upper: position) else {
            engine.counters.add(.staleDrops)
            return
        }
        guard takesFrame(inner, route, downlinks) else { return }
        if var run = downlinks.run, downlinks.runTarget == route.id, run.chunk == d.chunk,
           run.offset + run.length == d.offset {
            run.length += d.length
            downlinks.run = run
            if isData { engine.counters.add(.forwardedDown) }
            return
        }
        flushDownRun(downlinks)
        d.chunk.retain()
        downlinks.run = d
        downlinks.runTarget = route.id
        if isData { engine.counters.add(.forwardedDown) }
    }

    /// Whether the lower node takes a client frame of `inner` bytes (its max_frame, from its HELLO);
    /// a longer one is dropped here and counted, rather than closing a link that carries others.
    private func takesFrame(_ inner: Int, _ route: Downlinks.Route, _ downlinks: Downlinks) -> Bool {
        guard let link = downlinks.links[route.index], inner > link.maxFrame else { return true }
        engine.counters.add(.tooLargeDrops)
        return false
    }

    /// The run of downward frames goes on its lower link's output.
    func flushDownRun(_ downlinks: Downlinks) {
        guard let run = downlinks.run else { return }
        downlinks.run = nil
        let target = downlinks.runTarget
        pushLinkOutput(run, on: target)
        engine.send.postOrRun(table.slot(target.index), target, allowance: &inlineAllowance)
    }

    // MARK: link events

    /// A lower link is gone: the upper side hears LINK_DOWN for it, so the core
    /// forgets the sessions announced on it (the access node re-announces them).
    func downlinkClosed(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>, cause: CloseCause,
                        _ uplinks: Uplinks, _ downlinks: Downlinks) {
        if cause == .protocolError { engine.counters.add(.linkMalformed) }
        stopWaiting(s, uplinks)
        guard let link = downlinks.links.removeValue(forKey: id.index), link.id == id, link.up else { return }
        downlinks.removeRoute(link)
        engine.counters.set(.downlinksUp, UInt64(downlinks.upCount))
        engine.logger.info("link \(link.number) from node \(link.node) down (\(cause))")
        let position = link.upper
        guard uplinks.links[position].id == link.upperID else { return }  // the core lost them with that link
        let down = LinkMessage.linkDown(node: link.node, link: link.number)
        composeOnLink(position, uplinks, length: down.encodedLength) { down.encode(into: $0) }
    }

    /// An upper link is gone: the lower links whose traffic it carried are closed
    /// (the core lost their sessions with it); their nodes reconnect and re-announce.
    func closeDownlinks(of upper: ConnectionID, _ downlinks: Downlinks) {
        var closed = 0
        for link in downlinks.links.values where link.up && link.upperID == upper {
            engine.requestClose(link.id, cause: .upstream)
            closed += 1
        }
        if closed > 0 { engine.logger.warning("closing \(closed) lower links its upstream link carried") }
    }

    /// Every tick: a lower link from which nothing arrived for 3 of its heartbeats
    /// is closed, unless what arrived is still waiting to be dealt (then the
    /// delay is this server's, not the link's).
    func tickDownlinks(_ tick: UInt64, _ downlinks: Downlinks) {
        for link in downlinks.links.values where tick &- link.lastHeard > 3 * link.heartbeatTicks {
            let s = table.slot(link.id.index)
            guard s.state == .open, table.receiveRing(link.id.index).count == 0, !s.pointee.deal.waiting
            else { continue }
            engine.logger.warning("link \(link.number) from node \(link.node): nothing heard for 3 heartbeats, closing")
            engine.requestClose(link.id, cause: .idle)
        }
    }
}
