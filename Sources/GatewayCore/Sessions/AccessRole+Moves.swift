import Atomics
import Logging

/// A forwarding client's session across a hot restart (docs/HANDOVER.md, "Forwarding"; docs/LINK.md,
/// MOVE). The old process, holding the client for its hand-over, says MOVING on the session's link and
/// lets it move only once the core answers: everything the core sent for it on that link has then
/// come down and is queued for the client, so it travels with the connection. The session (its id,
/// uid and rooms) goes with it; the new process keeps the id as an alias of its own slot, says MOVED
/// on one of its links, and goes on under that id. Deal-owned, like the rest of the role.
extension AccessRole {
    /// `DealPart.moveState`.
    enum MoveState: UInt8 {
        case none = 0
        /// Old process: MOVING went up; the core's answer is awaited.
        case asked
        /// Old process: the core answered; the client may move.
        case answered
        /// Old process: the hand-over was called off before the answer came; it re-homes the session.
        case calledOff
        /// New process: adopted, MOVED not yet sent (no link was up).
        case owed
    }

    /// The id the core knows a client's session by: this node's, or the old process's for one adopted.
    @inline(__always)
    func sessionID(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) -> SessionID {
        if s.pointee.deal.adopted, let old = sessions.aliasIDs[id.index] { return old }
        return SessionID(node: links.node, connection: id)
    }

    private func moveState(_ s: UnsafeMutablePointer<ConnectionSlot>) -> MoveState {
        MoveState(rawValue: s.pointee.deal.moveState) ?? .none
    }

    private func setMoveState(_ s: UnsafeMutablePointer<ConnectionSlot>, _ state: MoveState) {
        s.pointee.deal.moveState = state.rawValue
    }

    // MARK: the old process

    /// A client held for its hand-over: one the core does not hold moves at once (it opens anew in the
    /// new process); one it holds asks MOVING and moves once answered, its session left for the exporter.
    func readyToMove(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) -> Bool {
        switch moveState(s) {
        case .answered:
            let bound = s.pointee.deal.bound
            engine.sessionsOut.put(id, MovedSession(id: sessionID(id, s), uid: bound ? s.pointee.deal.uid : nil,
                                                    rooms: sessions.directory.rooms(of: id.index)))
            return true
        case .asked, .calledOff, .owed:
            return false
        case .none:
            break
        }
        guard s.pointee.deal.opened, !s.pointee.deal.ended, s.pointee.deal.routed,
              let position = routedPosition(s), links.links[position].up else { return true }
        // A core that does not answer MOVE: the client is not quiet in time and drains.
        guard links.links[position].peerMoves else { return false }
        let moving = LinkMessage.move(sessionID(id, s), .moving, link: UInt16(position), peer: Self.noPeer,
                                      transport: 0)
        links.compose(on: position, length: moving.encodedLength) { moving.encode(into: $0) }
        setMoveState(s, .asked)
        return false
    }

    /// The core's answer to MOVING (MOVE ready), in order after what it sent the session on this link.
    func moveAnswered(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) {
        switch moveState(s) {
        case .asked:
            setMoveState(s, .answered)
            if s.handoverStep == .stopDealing {
                if readyToMove(id, s) { deal.passToSend(id, s) }
            } else {
                moveCalledOff(id, s)  // called off meanwhile, and not yet dealt since
            }
        case .calledOff:
            rehome(id, s)
        case .none, .answered, .owed:
            engine.counters.add(.staleDrops)  // an answer nobody asked for
        }
    }

    /// The hand-over of a client whose session was asked to move was called off: it is served here.
    /// A session the core let go of is taken back (MOVED on its link, from this process).
    func moveCalledOff(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) {
        switch moveState(s) {
        case .asked:
            engine.counters.add(.movesUnanswered)
            let session = sessionID(id, s)
            engine.logger.warning("hand-over: the core did not answer MOVING for \(session) in time; it drains")
            setMoveState(s, .calledOff)
        case .answered:
            _ = engine.sessionsOut.take(id)
            rehome(id, s)
        case .owed:
            if let position = links.nextUp() { announceMoved(id, s, on: position) }
        case .none, .calledOff:
            break
        }
    }

    /// MOVED from this process on the session's own link: the core holds it on that link again.
    private func rehome(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) {
        setMoveState(s, .none)
        guard let position = routedPosition(s), links.links[position].up else { return }
        let moved = movedMessage(id, s, on: position)
        links.compose(on: position, length: moved.encodedLength) { moved.encode(into: $0) }
    }

    /// The session's link died while its MOVING waited: the core lost the session (and the client was
    /// told upstream_lost, queued before it moves); it moves as a client the core does not hold.
    func linkLostMidMove(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) {
        guard moveState(s) == .asked || moveState(s) == .calledOff else { return }
        let held = moveState(s) == .asked
        setMoveState(s, .none)
        engine.counters.add(.movesLinkLost)
        engine.logger.warning("hand-over: the link of \(sessionID(id, s)) died mid-move; it opens anew")
        if held, s.handoverStep == .stopDealing { deal.passToSend(id, s) }
    }

    // MARK: the new process

    /// A client's first turn: an adopted session takes its old id, uid and rooms, and the core hears
    /// MOVED (on the next link up; or with its first frame, if none is); any other opens.
    func openOrAdopt(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) {
        guard let moved = engine.sessionsIn.take(id) else { return sessionOpened(id, s) }
        sessions.aliasSlots[moved.id] = id
        sessions.aliasIDs[id.index] = moved.id
        s.pointee.deal.adopted = true
        if let uid = moved.uid { sessions.directory.bind(id.index, uid: uid) }
        for room in moved.rooms where sessions.directory.join(id.index, room: room) == .full {
            engine.counters.add(.joinsRefused)  // this process's max_rooms_per_session is lower
        }
        publishSessionGauges()
        sessionOpened(id, s)
        setMoveState(s, .owed)
        if let position = links.nextUp() {
            announceMoved(id, s, on: position)
        } else {
            sessions.owedMoves.append(id)
        }
    }

    /// A link is up: every adopted session still owed MOVED gets it now (an idle client's turn may be
    /// far off, and the core ends a session not MOVED within its bound).
    func announceOwedMoves() {
        guard !sessions.owedMoves.isEmpty else { return }
        for id in sessions.owedMoves {
            let s = table.slot(id.index)
            guard s.holds(id), s.state == .open, moveState(s) == .owed, let position = links.nextUp() else { continue }
            announceMoved(id, s, on: position)
        }
        sessions.owedMoves.removeAll()
    }

    /// MOVED on link `position`: the session's link from now on.
    func announceMoved(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>, on position: Int) {
        guard let link = links.links[position].id else { return }
        let moved = movedMessage(id, s, on: position)
        links.compose(on: position, length: moved.encodedLength) { moved.encode(into: $0) }
        leaveRouteList(s)
        s.pointee.deal.routed = true
        s.pointee.deal.route = link.packed
        joinRouteList(id.index, s, position)
        setMoveState(s, .none)
        engine.counters.add(.sessionsMovedIn)
    }

    /// An adopted session's alias ends with its connection.
    func dropAlias(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) {
        guard s.pointee.deal.adopted, let old = sessions.aliasIDs.removeValue(forKey: id.index) else { return }
        sessions.aliasSlots.removeValue(forKey: old)
        s.pointee.deal.adopted = false
    }

    /// The slot of an adopted session named by its old id.
    func aliasedSlot(_ session: SessionID) -> ConnectionID? { sessions.aliasSlots[session] }

    /// MOVED for the session on link `position`: what OPENED would carry.
    private func movedMessage(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>, on position: Int)
        -> LinkMessage {
        .move(sessionID(id, s), .moved, link: UInt16(position), peer: s.pointee.monitor.peer,
              transport: s.pointee.monitor.transport)
    }

    static let noPeer = PeerAddress(family: 0, port: 0, bytes: (0, 0))
}
