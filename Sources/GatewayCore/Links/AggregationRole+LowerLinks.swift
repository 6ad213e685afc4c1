import Logging

/// The lower links' lives on the aggregation role: HELLO answered, LINK_DOWN up when one ends,
/// closed with the upper link that carried them or after 3 silent heartbeats.
extension AggregationRole {
    /// Answers a lower link's HELLO: accepted with an upper link to carry it, or
    /// refused (then closed once the answer is sent).
    func answerHello(_ hello: LinkMessage.Hello, _ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) {
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
        } else if let chosen = downlinks.chooseUpper(node: hello.node, among: links) {
            upper = chosen
        } else {
            status = .notReady
            why = "no upstream link up"
        }
        if status == .accepted, hello.maxFrame < FrameHeader.size {
            status = .roleRefused
            why = "max_frame \(hello.maxFrame) in its HELLO"
        }
        var answer = LinkMessage.Hello(role: .aggregation, node: links.node, link: hello.link,
                                       heartbeatMilliseconds: hello.heartbeatMilliseconds,
                                       maxFrame: UInt32(engine.config.maxFrame),
                                       maxQueuedBytes: UInt32(clamping: deal.live.maxQueuedBytes))
        answer.status = status.rawValue
        sendLinkMessage(.hello(answer), to: id)
        guard let upper, let upperID = links.links[upper].id else {
            engine.counters.add(.linksRefused)
            if downlinks.refusals.shouldLog(UInt64(hello.node), status: status.rawValue) {
                engine.logger.warning("refusing link \(hello.link) from node \(hello.node): \(status), \(why)")
            }
            downlinks.links[id.index]?.refused = true
            deal.closeAfterReplies(id, s, cause: .linkRefused)
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
        let (chunk, offset) = deal.reserve(message.encodedLength)
        message.encode(into: chunk.bytes + offset)
        let length = UInt32(message.encodedLength)
        deal.enqueue(FrameDescriptor(chunk: chunk, offset: UInt32(offset), length: length), to: id)
    }

    // MARK: link events

    /// A lower link is gone: the upper side hears LINK_DOWN for it, so the core
    /// forgets the sessions announced on it (the access node re-announces them).
    func downlinkClosed(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>, cause: CloseCause) {
        if cause == .protocolError { engine.counters.add(.linkMalformed) }
        links.stopWaiting(s)
        guard let link = downlinks.links.removeValue(forKey: id.index), link.id == id, link.up else { return }
        downlinks.removeRoute(link)
        engine.counters.set(.downlinksUp, UInt64(downlinks.upCount))
        engine.logger.info("link \(link.number) from node \(link.node) down (\(cause))")
        let position = link.upper
        guard links.links[position].id == link.upperID else { return }  // the core lost them with that link
        let down = LinkMessage.linkDown(node: link.node, link: link.number)
        links.compose(on: position, length: down.encodedLength) { down.encode(into: $0) }
    }

    /// An upper link is gone: the lower links whose traffic it carried are closed
    /// (the core lost their sessions with it); their nodes reconnect and re-announce.
    func closeDownlinks(of upper: ConnectionID) {
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
    func tickDownlinks(_ tick: UInt64) {
        for link in downlinks.links.values where tick &- link.lastHeard > 3 * link.heartbeatTicks {
            let s = table.slot(link.id.index)
            guard s.state == .open, table.receiveRing(link.id.index).count == 0, !s.pointee.deal.waiting
            else { continue }
            engine.logger.warning(
                "link \(link.number) from node \(link.node): nothing heard for 3 heartbeats, closing")
            engine.requestClose(link.id, cause: .idle)
        }
    }
}
