import Atomics
import CURCU
import Glibc
import Logging

/// Deal: takes frames off receive rings, answers heartbeats, calls the
/// application handler, and puts replies on send rings for Send. It is the
/// only producer of every send ring, and the only caller of the handler.
final class DealStage: StageWorker, @unchecked Sendable {  // runs on its own thread; shared state is in atomics
    let input: StageInbox
    unowned(unsafe) let engine: Engine
    let table: ConnectionTable
    let pool: ChunkPool
    private let handler: GatewayHandler

    /// The connection being dealt with and its reply waiting to be pushed:
    /// replies that follow one another in memory (an echoed run of frames)
    /// leave as one descriptor.
    // Stage state is owned by the token holder alone, so run-time exclusivity checks are dropped.
    @exclusivity(unchecked) private var current = DealStage.noConnection
    private static let noConnection = ConnectionID(index: .max, generation: .max)
    @exclusivity(unchecked) private var pending: FrameDescriptor?
    @exclusivity(unchecked) private var pushedToCurrent = false
    /// Replies queued since the counters were last updated (once per batch, not per frame).
    @exclusivity(unchecked) private var repliesQueued: UInt64 = 0
    @exclusivity(unchecked) var inlineAllowance = 0
    @exclusivity(unchecked) var bytesMoved = 0
    /// Where replies the handler composes are written; retired when full.
    @exclusivity(unchecked) var outBlock: Chunk?
    @exclusivity(unchecked) private var outUsed = 0
    /// The links to upstream servers, when the gateway forwards instead of calling the handler.
    let uplinks: Uplinks?
    /// The aggregation role's links from lower nodes.
    let downlinks: Downlinks?
    /// The access role's users and rooms, when it forwards.
    let sessions: Sessions?
    /// Clock ticks in a second, for what is rate-limited per second.
    let ticksPerSecond: UInt64
    /// The handler asked for `tick` on every clock tick.
    private let handlerTicks: Bool
    /// What a reload may change, taken at the next tick.
    @exclusivity(unchecked) private(set) var live: LiveSettings
    @exclusivity(unchecked) private var liveVersion: UInt64 = 0
    /// flood_frames_per_s / flood_bytes_per_s, when either is set.
    @exclusivity(unchecked) private var flood: FloodLimits?
    /// Send rings that kept their storage after a deal: given back at a tick once Send has written them.
    let ringSweep: RingSweep

    init(engine: Engine) {
        self.engine = engine
        table = engine.table
        pool = engine.pool
        handler = engine.handler
        input = StageInbox(name: "deal", gate: \.dealGate, capacity: engine.inboxCapacity)
        ringSweep = RingSweep(capacity: table.capacity, flag: \.deal.ringListed)
        let config = engine.config
        let tick = config.tickMilliseconds
        ticksPerSecond = UInt64(max(1, 1000 / tick))
        live = engine.live.current
        if config.upstream.isEmpty {
            uplinks = nil
        } else {
            uplinks = Uplinks(targets: live.linkTargets, node: 0,
                              heartbeatTicks: UInt64(config.linkHeartbeatMilliseconds / tick),
                              maxWaitTicks: live.maxWaitTicks)
            input.armedTimers.store(1, ordering: .relaxed)  // ticks for heartbeats and link deadlines
        }
        flood = FloodLimits(framesPerSecond: live.floodFramesPerSecond, bytesPerSecond: live.floodBytesPerSecond,
                            tickMilliseconds: tick)
        handlerTicks = engine.handler.wantsTicks
        if handlerTicks { input.armedTimers.store(1, ordering: .relaxed) }
        downlinks = config.role == .aggregation ? Downlinks() : nil
        sessions = uplinks != nil && config.role == .access ? Sessions(table: table, config: config) : nil
    }

    deinit {
        if let outBlock { pool.release(outBlock) }
    }

    func advanceTimers(to tick: UInt64) {
        if let newer = engine.live.newer(than: &liveVersion) { takeLive(newer) }
        if let uplinks { tickLinks(tick, uplinks) }
        if let downlinks { tickDownlinks(tick, downlinks) }
        if let sessions { tickSessions(tick, sessions) }
        if handlerTicks { handler.tick(milliseconds: tick &* UInt64(engine.config.tickMilliseconds)) }
        if ringSweep.count > 0 {
            ringSweep.sweep(table) { table.sendRing($0) }
            if ringSweep.count == 0 { publishTimers() }
        }
    }

    /// Deal wants ticks for its links, the handler's ticks, or send rings left to give back.
    func publishTimers() {
        let wanted = uplinks != nil || handlerTicks || ringSweep.count > 0
        input.armedTimers.store(wanted ? 1 : 0, ordering: .relaxed)
    }

    /// A reload's settings, at a tick.
    private func takeLive(_ new: LiveSettings) {
        if new.floodFramesPerSecond != live.floodFramesPerSecond || new.floodBytesPerSecond != live.floodBytesPerSecond {
            flood = FloodLimits(framesPerSecond: new.floodFramesPerSecond, bytesPerSecond: new.floodBytesPerSecond,
                                tickMilliseconds: engine.config.tickMilliseconds)
        }
        live = new
        uplinks?.maxWaitTicks = new.maxWaitTicks
        uplinks?.retarget(new.linkTargets)
        sessions?.directory.maxRooms = new.maxRoomsPerSession
        takenLiveVersion.store(liveVersion, ordering: .releasing)
    }

    /// The LiveSettings version Deal has taken: Monitor connects a reload's new links only after.
    let takenLiveVersion = ManagedAtomic<UInt64>(0)

    func batchDone() {
        if let uplinks, !uplinks.dirty.isEmpty { flushLinks(uplinks) }
        if repliesQueued > 0 {
            engine.counters.add(.framesOut, repliesQueued)
            repliesQueued = 0
        }
        if ringSweep.sweepIfLong(table, ring: { table.sendRing($0) }), ringSweep.count == 0 { publishTimers() }
    }

    func service(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) {
        switch (s.kind, uplinks, downlinks) {
        case (.uplink, let uplinks?, _): dealUplink(id, s, uplinks)
        case (.downlink, let uplinks?, let downlinks?): dealDownlink(id, s, uplinks, downlinks)
        default: deal(id, s)
        }
    }

    func detached(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) { finalize(id, s) }

    private func deal(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) {
        if holdsForHandover(id, s) { return }
        drainBacklog(id, s)
        let connection = Connection(id: id, deal: self)
        if uplinks != nil {
            if s.pointee.deal.waiting { return }  // dealt again when its link has room
            if !s.pointee.deal.opened, let sessions { sessionOpened(id, s, sessions) }
        } else if !s.pointee.deal.opened {
            s.pointee.deal.opened = true
            handler.opened(connection)
        }
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
            } else if let uplinks {
                if !forwardUp(frame, id, s, uplinks) { return .pause(at: offset) }
            } else {
                handler.received(frame, on: connection)
            }
            return .next
        }
        engine.counters.add(.framesIn, UInt64(dealt))
        let ring = table.receiveRing(id.index)
        if s.atomic(\.reconnectNotice).load(ordering: .acquiring) == 1, sendRing.freeCount > 1 { askToReconnect(id, s) }
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
        engine.logger.warning("closing \(s.pointee.peer) for flood (\(limits.unlogged) since the last such line)")
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
    private func waitForSendRoom(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>, _ ring: FrameRing) -> Bool {
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

    /// Called after a connection's close was requested and Monitor detached it:
    /// the handler hears of it, then liburcu frees the slot after a grace period.
    private func finalize(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) {
        guard s.beginReclaiming() else { return }
        let cause = s.endings.closeCause ?? .ioError
        switch (s.kind, uplinks, downlinks) {
        case (.uplink, let uplinks?, _):
            uplinkClosed(id, s, cause: cause, uplinks)
            engine.scheduleReclaim(s)
            return  // a link's close is counted as a link close, not a client's
        case (.downlink, let uplinks?, let downlinks?):
            downlinkClosed(id, s, cause: cause, uplinks, downlinks)
        case (_, let uplinks?, _):
            forwardClose(id, s, cause: cause, uplinks)
            if let sessions { sessionClosed(id, s, sessions) }
        default:
            if s.pointee.deal.opened { handler.closed(Connection(id: id, deal: self), cause: cause) }
        }
        engine.counters.addClose(cause)
        engine.scheduleReclaim(s)
    }

    // MARK: replies, called by handlers through Connection

    /// Queues a reply that lives in `d` (taking a new reference on its chunk).
    func enqueue(_ d: FrameDescriptor, to id: ConnectionID) {
        let s = table.slot(id.index)
        // A handle may outlive its connection (e.g. used from `closed`): its sends go nowhere.
        guard s.holds(id), s.state == .open else { return }
        repliesQueued &+= 1
        if id == current, var p = pending, p.chunk == d.chunk, p.offset + p.length == d.offset {
            p.length += d.length
            pending = p
            return
        }
        d.chunk.retain()
        if id == current {
            flushPending()
            pending = d
            return
        }
        push(d, id, s)
        // Posted, not run here: a link's batch feeds many clients, and Send writing them on its
        // own core beats Deal writing them in turn (perf/RESULTS.md, (h)).
        engine.send.input.post(s, id)
    }

    /// Writes a new frame into the reply block and queues it.
    func compose(_ header: FrameHeader, body: UnsafeRawBufferPointer, to id: ConnectionID) {
        let length = FrameHeader.size + body.count
        var h = header
        h.length = UInt32(length)
        let (chunk, offset) = reserve(length)
        h.encode(into: chunk.bytes + offset)
        if body.count > 0 { (chunk.bytes + offset + FrameHeader.size).copyMemory(from: body.baseAddress!, byteCount: body.count) }
        enqueue(FrameDescriptor(chunk: chunk, offset: UInt32(offset), length: UInt32(length)), to: id)
        if chunk != outBlock { pool.release(chunk) }  // a frame too big for the block got a chunk of its own
    }

    /// Asks for `id` to be closed once the replies already queued are sent.
    func closeAfterReplies(_ id: ConnectionID) {
        let s = table.slot(id.index)
        guard s.holds(id), s.state == .open else { return }
        if id == current { flushPending() }  // on the ring before the flag: Send finishes only after it
        closeAfterReplies(id, s, cause: .handler)
    }

    func reserve(_ length: Int) -> (Chunk, Int) {
        if length > ChunkPool.blockCapacity { return (pool.allocate(capacity: length), 0) }
        if let block = outBlock, block.capacity - outUsed >= length {
            defer { outUsed += length }
            return (block, outUsed)
        }
        if let block = outBlock { pool.release(block) }
        let fresh = pool.allocate(capacity: ChunkPool.blockCapacity)
        outBlock = fresh
        outUsed = length
        return (fresh, 0)
    }

    private func flushPending() {
        guard let d = pending else { return }
        pending = nil
        push(d, current, table.slot(current.index))
        pushedToCurrent = true
    }

    /// A reply or forwarded frame past max_queued_bytes closes the client as a slow consumer.
    private func push(_ d: FrameDescriptor, _ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) {
        if !queueOutput(d, id, s) {
            engine.counters.add(.queueOverflowCloses)
            engine.requestClose(id, cause: .slowConsumer)
        }
    }
}
