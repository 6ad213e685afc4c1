import Atomics
import CURCU
import Glibc
import Logging

/// Deal: takes frames off receive rings, answers heartbeats, and puts replies on send rings for
/// Send. It is the only producer of every send ring. What it does with a frame is its role's
/// (DealRole.swift): the handler's, the access node's or the aggregation server's; Deal keeps
/// what they share: the ring walk, replies, back-pressure and closing after the replies.
final class DealStage: StageWorker, @unchecked Sendable {  // runs on its own thread; shared state is in atomics
    let input: StageInbox
    unowned(unsafe) let engine: Engine
    let table: ConnectionTable
    let pool: ChunkPool

    /// The connection being dealt with and its reply waiting to be pushed:
    /// replies that follow one another in memory (an echoed run of frames)
    /// leave as one descriptor.
    // Stage state is owned by the token holder alone, so run-time exclusivity checks are dropped.
    @exclusivity(unchecked) var current = DealStage.noConnection
    static let noConnection = ConnectionID(index: .max, generation: .max)
    @exclusivity(unchecked) var pending: FrameDescriptor?
    @exclusivity(unchecked) var pushedToCurrent = false
    /// Replies queued since the counters were last updated (once per batch, not per frame).
    @exclusivity(unchecked) var repliesQueued: UInt64 = 0
    @exclusivity(unchecked) var inlineAllowance = 0
    @exclusivity(unchecked) var bytesMoved = 0
    /// Where replies the handler composes are written; retired when full.
    @exclusivity(unchecked) var outBlock: Chunk?
    @exclusivity(unchecked) var outUsed = 0
    /// What this node does with frames; set once, in `init`.
    @exclusivity(unchecked) private(set) var role: DealRole
    /// Clock ticks in a second, for what is rate-limited per second.
    let ticksPerSecond: UInt64
    /// What a reload may change, taken at the next tick.
    @exclusivity(unchecked) private(set) var live: LiveSettings
    @exclusivity(unchecked) private var liveVersion: UInt64 = 0
    /// flood_frames_per_s / flood_bytes_per_s, when either is set.
    @exclusivity(unchecked) var flood: FloodLimits?
    /// Send rings that kept their storage after a deal: given back at a tick once Send has written them.
    let ringSweep: RingSweep
    /// The role wants every tick: links' heartbeats and deadlines, or a handler's `tick`.
    let roleTicks: Bool

    init(engine: Engine) {
        self.engine = engine
        table = engine.table
        pool = engine.pool
        input = StageInbox(name: "deal", gate: \.dealGate, capacity: engine.inboxCapacity)
        ringSweep = RingSweep(capacity: table.capacity, flag: \.deal.ringListed)
        let config = engine.config
        let tick = config.tickMilliseconds
        ticksPerSecond = UInt64(max(1, 1000 / tick))
        live = engine.live.current
        flood = FloodLimits(framesPerSecond: live.floodFramesPerSecond, bytesPerSecond: live.floodBytesPerSecond,
                            tickMilliseconds: tick)
        let handler = HandlerRole(engine.handler)
        role = .handler(handler)  // until the node is known to forward, below
        roleTicks = !config.upstream.isEmpty || handler.wantsTicks
        if !config.upstream.isEmpty {
            let links = Uplinks(deal: self, role: config.role == .aggregation ? .aggregation : .access,
                                heartbeatTicks: UInt64(config.linkHeartbeatMilliseconds / tick))
            role = config.role == .aggregation ? .aggregation(AggregationRole(deal: self, links: links))
                : .access(AccessRole(deal: self, links: links))
        }
        if roleTicks { input.armedTimers.store(1, ordering: .relaxed) }
    }

    deinit {
        if let outBlock { pool.release(outBlock) }
    }

    /// The links to upstream servers, when the node forwards.
    var uplinks: Uplinks? {
        switch role {
        case .handler: nil
        case .access(let access): access.links
        case .aggregation(let aggregation): aggregation.links
        }
    }

    func advanceTimers(to tick: UInt64) {
        if let newer = engine.live.newer(than: &liveVersion) { takeLive(newer) }
        switch role {
        case .handler(let handler): handler.tick(tick &* UInt64(engine.config.tickMilliseconds))
        case .access(let access): access.tick(tick)
        case .aggregation(let aggregation): aggregation.tick(tick)
        }
        if ringSweep.count > 0 {
            ringSweep.sweep(table) { table.sendRing($0) }
            if ringSweep.count == 0 { publishTimers() }
        }
    }

    /// Deal wants ticks for its links, the handler's ticks, or send rings left to give back.
    func publishTimers() {
        input.armedTimers.store(roleTicks || ringSweep.count > 0 ? 1 : 0, ordering: .relaxed)
    }

    /// A reload's settings, at a tick.
    private func takeLive(_ new: LiveSettings) {
        if new.floodFramesPerSecond != live.floodFramesPerSecond
            || new.floodBytesPerSecond != live.floodBytesPerSecond {
            flood = FloodLimits(framesPerSecond: new.floodFramesPerSecond, bytesPerSecond: new.floodBytesPerSecond,
                                tickMilliseconds: engine.config.tickMilliseconds)
        }
        live = new
        if let uplinks {
            uplinks.maxWaitTicks = new.maxWaitTicks
            uplinks.retarget(new.linkTargets)
        }
        if case .access(let access) = role { access.sessions.directory.maxRooms = new.maxRoomsPerSession }
        takenLiveVersion.store(liveVersion, ordering: .releasing)
    }

    /// The LiveSettings version Deal has taken: Monitor connects a reload's new links only after.
    let takenLiveVersion = ManagedAtomic<UInt64>(0)

    func batchDone() {
        if let uplinks, !uplinks.dirty.isEmpty { uplinks.flush() }
        if repliesQueued > 0 {
            engine.counters.add(.framesOut, repliesQueued)
            repliesQueued = 0
        }
        if ringSweep.sweepIfLong(table, ring: { table.sendRing($0) }), ringSweep.count == 0 { publishTimers() }
    }

    func service(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) {
        switch role {
        case .handler(let handler): dealClient(id, s, handler)
        case .access(let access):
            if s.kind == .uplink { access.dealUplink(id, s) } else { dealClient(id, s, access) }
        case .aggregation(let aggregation):
            // Every connection an aggregation server accepts is a lower link.
            if s.kind == .uplink { aggregation.dealUplink(id, s) } else { aggregation.dealDownlink(id, s) }
        }
    }

    func detached(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) { finalize(id, s) }

    /// Called after a connection's close was requested and Monitor detached it:
    /// its role hears of it, then liburcu frees the slot after a grace period.
    private func finalize(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) {
        guard s.beginReclaiming() else { return }
        let cause = s.endings.closeCause ?? .ioError
        let link = s.kind == .uplink
        switch role {
        case .handler(let handler): handler.closed(s, Connection(id: id, deal: self), cause: cause)
        case .access(let access):
            if link { access.linkClosed(id, s, cause: cause) } else { access.closed(id, s, cause: cause) }
        case .aggregation(let aggregation):
            if link {
                aggregation.linkClosed(id, s, cause: cause)
            } else {
                aggregation.downlinkClosed(id, s, cause: cause)
            }
        }
        if !link { engine.counters.addClose(cause) }  // a link's close is counted as a link close, not a client's
        engine.scheduleReclaim(s)
    }
}
