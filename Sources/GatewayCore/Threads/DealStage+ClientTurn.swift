import Atomics
import Logging

/// What the roles that serve clients (handler, access) do differently on a client's turn. Deal's
/// client turn is generic over it and inlined per role: no dynamic dispatch per frame.
protocol ClientRole: AnyObject {
    /// A client's turn begins: false when it is not dealt now (it waits for room on its link).
    func begin(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>, _ connection: Connection) -> Bool
    /// One client frame other than a heartbeat: false when dealing pauses at it (its output is full).
    func received(_ frame: Frame, _ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>,
                  _ connection: Connection) -> Bool
    /// A hot restart's hand-over: true once the client may pass on to Send and move (nothing more
    /// is owed it here); false while it waits (it is dealt again when that changes).
    func readyToMove(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) -> Bool
    /// The hand-over of a client whose `moveState` is set was called off: it is served here again.
    func moveCalledOff(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>)
}

extension ClientRole {
    /// The handler's clients owe nothing beyond what Deal has dealt.
    func readyToMove(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) -> Bool { true }
    func moveCalledOff(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) {}
}

/// A client's turn on Deal: its frames in order, each within the flood limits and with room for
/// its replies, heartbeats answered here; then the replies go to Send and reading resumes.
extension DealStage {
    @inline(__always)
    func dealClient<Role: ClientRole>(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>, _ role: Role) {
        if holdsForHandover(id, s, role) { return }
        drainBacklog(id, s)
        let connection = Connection(id: id, deal: self)
        guard role.begin(id, s, connection) else { return }
        current = id
        pushedToCurrent = false
        if let flood { flood.refill(s, now: input.currentTick) }
        let sendRing = table.sendRing(id.index)
        let (_, dealt) = walkFrames(id, s) { d, offset, _ in
            if s.endings.isFlushing { return .skipRest }  // the handler closed it: later frames are dropped
            if !hasReplyRoom(s, sendRing) && !waitForSendRoom(id, s, sendRing) { return .pause(at: offset) }
            let header = FrameHeader(decoding: d.start)
            if let flood, !flood.spend(s, length: Int(header.length)) {
                floodClose(id, s)
                return .abandon
            }
            let frame = Frame(header: header, bytes: UnsafeRawBufferPointer(start: d.start, count: Int(d.length)),
                              descriptor: d)
            if header.cmd == ReservedCommand.heartbeat {
                connection.forward(frame)
            } else if !role.received(frame, id, s, connection) {
                return .pause(at: offset)
            }
            return .next
        }
        engine.counters.add(.framesIn, UInt64(dealt))
        let ring = table.receiveRing(id.index)
        if s.atomic(\.reconnectNotice).load(ordering: .acquiring) == 1, sendRing.freeCount > 1 {
            askToReconnect(id, s)
        }
        flushPending()
        current = DealStage.noConnection
        if pushedToCurrent { engine.send.postOrRun(s, id, allowance: &inlineAllowance) }
        resumeReceive(id, s)
        if ring.count == 0 { s.pointee.deal.shed = false }
        if ring.count == 0, let cause = s.endings.inputEnded { closeAfterReplies(id, s, cause: cause, sendNow: true) }
        // Written already (Send ran inline) or nothing queued: no storage held; else at a tick.
        if ringSweep.detachOrKeep(sendRing, id, s) { publishTimers() }
    }

    /// Queues the hot-restart drain's *please reconnect*, after the replies to what was dealt.
    private func askToReconnect(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) {
        s.atomic(\.reconnectNotice).store(2, ordering: .relaxed)
        let now = MonotonicClock.nanoseconds()
        let deadline = engine.reconnectDeadline.load(ordering: .relaxed)
        let left = deadline > now ? (deadline - now) / 1_000_000 : 0
        var body = UInt32(min(left, UInt64(UInt32.max))).bigEndian
        let header = FrameHeader(length: 0, seq: 0, cmd: ReservedCommand.pleaseReconnect, status: 0, uid: 0)
        withUnsafeBytes(of: &body) { compose(header, body: $0, to: id) }
        engine.counters.add(.reconnectNotices)
    }

    /// Over a flood limit: closed at once (what it queued is dropped with it), logged
    /// at most once per 10 s with the count since the last line.
    private func floodClose(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) {
        engine.requestClose(id, cause: .flood)
        guard var limits = flood else { return }
        defer { flood = limits }
        limits.unlogged += 1
        let now = input.currentTick
        guard now &- limits.loggedAt >= limits.logEveryTicks || limits.loggedAt == 0 else { return }
        engine.logger.warning(
            "closing \(s.pointee.monitor.peer) for flood (\(limits.unlogged) since the last such line)")
        limits.unlogged = 0
        limits.loggedAt = now
    }

    /// Receive paused reading because the receive ring was full; Deal has made room.
    func resumeReceive(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) {
        // Pairs with Receive's store-then-check in readUntilDrained: both sides fence.
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        if s.flag(\.receivePaused), s.atomic(\.receivePaused).exchange(0, ordering: .acquiringAndReleasing) == 1 {
            engine.receive.input.post(s, id)
        }
    }

    /// Send-ring entries free before a client's next frame is dealt, with nothing in its backlog:
    /// room for what one frame's replies usually take (a core answering a login with BIND, JOIN
    /// and the echo), so that replies to a client's own frames seldom need the backlog's copy.
    static let replyRoom = 4

    /// A client's next frame is dealt only while at most half its byte bound waits for its socket:
    /// the other half (at least one max_frame) is for that frame's replies and what links send it.
    private func hasReplyRoom(_ s: UnsafeMutablePointer<ConnectionSlot>, _ ring: FrameRing) -> Bool {
        s.pointee.deal.backlog.isEmpty && ring.freeCount >= Self.replyRoom && s.outstandingBytes <= queueBound(s) / 2
    }

    /// The client's output is backed up: dealing its input pauses until Send makes room, so the
    /// receive ring fills, Receive stops reading and TCP pushes back on the client. A client that
    /// only sends while its replies wait is slowed down, never closed: only Send's stall timer
    /// closes one, after write_stall_timeout without write progress.
    private func waitForSendRoom(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>,
                                 _ ring: FrameRing) -> Bool {
        flushPending()
        if hasReplyRoom(s, ring) { return true }
        s.atomic(\.dealPaused).store(1, ordering: .sequentiallyConsistent)
        drainBacklog(id, s)
        if hasReplyRoom(s, ring) {
            s.atomic(\.dealPaused).store(0, ordering: .relaxed)
            return true
        }
        engine.send.input.post(s, id)
        return false
    }
}
