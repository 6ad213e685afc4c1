import Atomics
import Logging

/// Upward on the aggregation role: what a lower link sends goes up unchanged over the upper link
/// chosen at its HELLO, as descriptors of the blocks it was read into (no copy), in runs of checked
/// messages. Its HELLO and HEARTBEAT are answered here and go no further.
extension AggregationRole {
    private enum LowerStep { case forward(isData: Bool), heartbeat, hello(LinkMessage.Hello), skip, malformed(String) }

    /// A lower link's turn: its checked messages go up its upper link in runs.
    func dealDownlink(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) {
        let now = deal.input.currentTick
        if downlinks.links[id.index]?.id != id {
            downlinks.links[id.index] = Downlinks.Link(id: id, heartbeatTicks: links.heartbeatTicks, lastHeard: now)
        }
        deal.drainBacklog(id, s)
        if s.pointee.deal.waiting { return }  // dealt again when its upper link has room
        if table.receiveRing(id.index).count > 0 { downlinks.links[id.index]?.lastHeard = now }
        // The run of checked messages since the last one answered here, forwarded up as one descriptor.
        var runStart = Int(s.pointee.deal.dealOffset)
        var runData = 0
        let (end, _) = deal.walkFrames(id, s, frame: { d, offset, whole in
            guard let link = downlinks.links[id.index] else { return .abandon }  // set when its turn began
            switch lowerFrame(d.start, link) {
            case .forward(let isData):
                if isData { runData += 1 }
            case .heartbeat:
                // Answered here: what came before it goes up first.
                guard forwardRun(whole, runStart..<offset, runData, s, id) else {
                    return .pause(at: runStart)
                }
                deal.enqueue(d, to: id)
                (runStart, runData) = (offset + Int(d.length), 0)
            case .hello(let hello):
                answerHello(hello, id, s)
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
            guard forwardRun(whole, runStart..<offset, runData, s, id) else {
                return .pause(at: runStart)
            }
            (runStart, runData) = (0, 0)
            return .next
        })
        if end == .abandoned { return }
        deal.resumeReceive(id, s)
        if table.receiveRing(id.index).count == 0, let cause = s.endings.inputEnded {
            deal.closeAfterReplies(id, s, cause: cause)
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
            return ownSession(session, link)
                ? .forward(isData: false) : .malformed("a session of node \(session.node)")
        case .data(let session, _):
            return ownSession(session, link) ? .forward(isData: true) : .malformed("a session of node \(session.node)")
        case .linkDown:
            return link.role == NodeRole.aggregation.rawValue ? .forward(isData: false) : .malformed("LINK_DOWN")
        case .presence(_, let node, _):
            return link.role == NodeRole.aggregation.rawValue || node == link.node
                ? .forward(isData: false) : .malformed("PRESENCE of node \(node)")
        case .bind, .unbind, .join, .leave, .push, .kick, .presenceQuery:
            return .malformed("\(message) sent upward")
        case .move:  // this server's HELLO does not offer MOVE: its lower nodes' clients drain
            return .malformed("MOVE, which this aggregation server does not pass")
        }
    }

    private func ownSession(_ session: SessionID, _ link: Downlinks.Link) -> Bool {
        link.role == NodeRole.aggregation.rawValue || session.node == link.node
    }

    /// Puts `range` of `d` (whole, checked link messages) on the upper link's
    /// send ring as one descriptor; false when that link has no room (the lower
    /// link waits in its list, and its reading pauses once its own ring fills).
    private func forwardRun(_ d: FrameDescriptor, _ range: Range<Int>, _ dataFrames: Int,
                            _ s: UnsafeMutablePointer<ConnectionSlot>, _ id: ConnectionID) -> Bool {
        guard !range.isEmpty else { return true }
        guard let link = downlinks.links[id.index] else { return false }  // set when its turn began
        let position = link.upper
        guard links.links[position].id == link.upperID else {
            // Its upper link is gone: this link is being closed (closeDownlinks), and what it sent with it.
            engine.requestClose(id, cause: .upstream)
            return false
        }
        let ls = table.slot(link.upperID.index)
        guard links.hasRoom(link.upperID, ls) else {
            links.pause(id, s, on: link.upperID, at: position, ls)
            return false
        }
        if let p = links.links[position].pending {  // composed output (heartbeats, LINK_DOWN) keeps its place
            links.links[position].pending = nil
            links.push(p, on: link.upperID)
        }
        d.chunk.retain()
        links.push(FrameDescriptor(chunk: d.chunk, offset: d.offset + UInt32(range.lowerBound),
                                   length: UInt32(range.count)), on: link.upperID)
        links.markDirty(position)
        engine.counters.add(.forwardedUp, UInt64(dataFrames))
        return true
    }
}
