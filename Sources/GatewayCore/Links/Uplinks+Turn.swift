import Atomics
import Logging

/// An upstream link's life on Deal, the same for the access and aggregation roles: HELLO once
/// connected, the upper side's HELLO and heartbeats answered, the link's waiters woken when it has
/// room; every other message goes to the role (`downward`). Heartbeats and deadlines at each tick.
extension Uplinks {
    enum Step { case next, closeLink }

    /// A link's turn on Deal: HELLO once connected, its waiters once it has room, then its frames,
    /// each past HELLO and heartbeats handed to `downward` (message, its descriptor, link, position).
    /// `walked` runs after the walk, whatever its end.
    @inline(__always)
    func turn(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>,
              downward: (LinkMessage, FrameDescriptor, ConnectionID, Int) -> Step, walked: () -> Void = {}) {
        let position = Int(s.pointee.monitor.linkPosition)
        let now = deal.input.currentTick
        if links[position].id != id {
            links[position] = Link(id: id, lastHeard: now, lastBeat: now)
            let hello = LinkMessage.hello(.init(role: role, node: node, link: UInt16(position),
                                                heartbeatMilliseconds: UInt32(engine.config.linkHeartbeatMilliseconds),
                                                maxFrame: UInt32(engine.config.maxFrame),
                                                maxQueuedBytes: UInt32(clamping: deal.live.maxQueuedBytes)))
            compose(on: position, length: hello.encodedLength) { hello.encode(into: $0) }
        }
        deal.drainBacklog(id, s)
        if links[position].waitHead != Uplinks.none, hasRoom(id, s) { wakeWaiters(position) }
        let (end, _) = deal.walkFrames(id, s) { d, _, _ in
            let step: Step
            switch LinkMessage.decode(d.start, maxFrame: engine.config.maxFrame) {
            case .success(let message):
                step = answered(message, id, position) ?? downward(message, d, id, position)
            case .failure(let error):
                step = malformed(id, position, "\(error)")
            }
            switch step {
            case .next:
                links[position].lastHeard = now
                return .next
            case .closeLink:
                return .abandon
            }
        }
        walked()
        if end == .abandoned { return }
        deal.resumeReceive(id, s)
        if table.receiveRing(id.index).count == 0, s.endings.hasInputEnded { engine.requestClose(id, cause: .peer) }
    }

    /// HELLO and heartbeats, answered here; nil for a message the role deals with.
    private func answered(_ message: LinkMessage, _ link: ConnectionID, _ position: Int) -> Step? {
        switch message {
        case .hello(let hello) where !links[position].up:
            guard hello.status == LinkMessage.HelloStatus.accepted.rawValue,
                  hello.version == LinkMessage.version else {
                if refusals.shouldLog(UInt64(position), status: hello.status) {
                    let why = LinkMessage.HelloStatus(rawValue: hello.status).map { "\($0)" }
                        ?? "status \(hello.status)"
                    engine.logger.warning(
                        "\(name(position)): refused by node \(hello.node): \(why), version \(hello.version)")
                }
                engine.requestClose(link, cause: .linkRefused)
                return .closeLink
            }
            guard hello.maxFrame >= FrameHeader.size else {
                return malformed(link, position, "HELLO with max_frame \(hello.maxFrame)")
            }
            refusals.accepted(UInt64(position))
            links[position].up = true
            links[position].peerMaxFrame = Int(hello.maxFrame)
            links[position].peerMoves = hello.features & LinkMessage.Feature.moves != 0
            upCount += 1
            publishMoves()
            engine.counters.set(.linksUp, UInt64(upCount))
            engine.logger.info("\(name(position)): up (node \(hello.node))")
            return .next
        case _ where !links[position].up:
            return malformed(link, position, "\(message) before HELLO")
        case .heartbeat:
            let sent = links[position].beatSentAt
            if sent != 0 {
                engine.roundTrips.record(nanoseconds: MonotonicClock.nanoseconds() &- sent)
                links[position].beatSentAt = 0
            }
            return .next
        default:
            return nil
        }
    }

    func malformed(_ link: ConnectionID, _ position: Int, _ why: String) -> Step {
        engine.logger.warning("\(name(position)): closing, malformed: \(why)")
        engine.requestClose(link, cause: .protocolError)
        return .closeLink
    }

    /// A link is gone: its waiters are dealt again (they move to other links at their next frame),
    /// and `lost` tells the role, with the link's position, before the entry is cleared.
    func closed(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>, cause: CloseCause,
                lost: (Int) -> Void) {
        // Counted here, once, whether Receive's cutter or Deal's decoder found the bad frame.
        if cause == .protocolError { engine.counters.add(.linkMalformed) }
        let position = Int(s.pointee.monitor.linkPosition)
        guard position < links.count, links[position].id == id else { return }
        if links[position].up {
            upCount -= 1
            engine.counters.set(.linksUp, UInt64(upCount))
            engine.logger.warning("\(name(position)): down")
        }
        if let p = links[position].pending { deal.pool.release(p.chunk) }
        wakeWaiters(position)
        lost(position)
        links[position] = Link()
        publishMoves()
        engine.counters.add(.linkCloses)
    }

    /// Every tick: heartbeats on links that are up, the deadline on every link, and
    /// max_queue_wait on the clients waiting for one (oldest first: the list is in order).
    func tick(_ tick: UInt64) {
        for position in links.indices {
            guard let link = links[position].id else { continue }
            while maxWaitTicks > 0, links[position].waitHead != Uplinks.none {
                let index = links[position].waitHead
                let s = table.slot(index)
                guard tick &- s.pointee.deal.waitSince > maxWaitTicks else { break }
                stopWaiting(s)
                s.pointee.deal.shed = true
                deal.input.post(s, ConnectionID(index: index, generation: s.generation.load(ordering: .acquiring)))
            }
            // Frames still waiting here to be dealt (a full client paused the link) are news enough.
            if tick &- links[position].lastHeard > 3 * heartbeatTicks, table.receiveRing(link.index).count == 0 {
                engine.logger.warning("\(name(position)): nothing heard for 3 heartbeats, closing")
                links[position].lastHeard = tick  // asked once
                engine.requestClose(link, cause: .idle)
                continue
            }
            if links[position].up, tick &- links[position].lastBeat >= heartbeatTicks,
               table.sendRing(link.index).freeCount >= Self.room {
                links[position].lastBeat = tick
                links[position].beatSentAt = MonotonicClock.nanoseconds()
                let beat = LinkMessage.heartbeat
                compose(on: position, length: beat.encodedLength) { beat.encode(into: $0) }
            }
        }
        flush()
    }
}
