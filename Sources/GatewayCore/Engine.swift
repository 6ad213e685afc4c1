import Atomics
import CLinux
import CURCU
import Glibc
import Logging

/// What the four threads share: the configuration, the connection table, the
/// chunk pool, the poller, the stages' inboxes, the counters, and the close
/// path every thread may start.
final class Engine: @unchecked Sendable {  // shared parts are immutable, atomic, or owned per the slot rules
    let config: GatewayConfig
    let logger: Logger
    let handler: GatewayHandler
    let table: ConnectionTable
    let pool = ChunkPool()
    let counters = Counters()
    /// What a reload changes while running (`reconfigure`).
    let live: PublishedSettings
    let roundTrips = RoundTrips()
    /// A hot restart's forwarding sessions (docs/HANDOVER.md): Deal's to the exporter in the old process,
    /// Monitor's to Deal in the new one; and whether every link up answers MOVE (Deal publishes it).
    let sessionsOut = SessionHandoff()
    let sessionsIn = SessionHandoff()
    let linksMove = ManagedAtomic<Bool>(false)
    let poller: Poller
    let inboxCapacity: Int
    /// The allow and deny lists (read-only) and the per-address limits, checked at accept,
    /// or by Receive once a PROXY header names the client.
    let rules: ManagedAtomic<AddressRules>
    let limits: SharedAddressLimits
    /// WebSocket listeners' transport (docs/WEBSOCKET.md); nil when no listener speaks WebSocket.
    private(set) var webSocket: WebSocketTransport?
    /// TLS listeners' transport (docs/TLS.md), and links' to tls:// upstreams; nil when none.
    let tls: TLSTransport?
    let tlsLinks: TLSTransport?
    /// UDP sessions' transport (docs/UDP.md); nil when no listener is udp://.
    private(set) var udp: UDPTransport?

    /// Monitor's inbox: connections whose close was requested.
    let closeRequests: StageInbox
    // Unowned so that the hot hand-off paths do no reference counting; `workers` keeps them alive.
    private(set) unowned(unsafe) var receive: ReceiveStage!
    private(set) unowned(unsafe) var deal: DealStage!
    private(set) unowned(unsafe) var send: SendStage!
    private var workers: [AnyObject] = []

    /// Bytes held by every connection's incomplete frame: Receive adds as they grow and
    /// shrink, reclamation subtracts what a closed connection held.
    let pendingBytes = UnsafeAtomic<Int>.create(0)
    private let stopping = UnsafeAtomic<Bool>.create(false)
    /// A hot restart's drain: set by Monitor when it begins, with the time (monotonic ns) at which
    /// the connections still open are ended; Deal tells each client how long it has left.
    private let restarting = UnsafeAtomic<Bool>.create(false)
    let reconnectDeadline = UnsafeAtomic<UInt64>.create(0)
    /// A reload turned per-address counting on: Monitor counts the clients already open at its next tick.
    let countOpenAddresses = ManagedAtomic<Bool>(false)
    /// The LiveSettings version Monitor admits connections under (`reconfigure` waits for it).
    let acceptTakenVersion = ManagedAtomic<UInt64>(0)
    /// Monitor watches the listeners (not paused, not held for a link, not draining).
    let accepting = ManagedAtomic<Bool>(false)
    private let exitStages = UnsafeAtomic<Bool>.create(false)
    /// Why the engine stopped by itself (a broken poller): written by Monitor before it releases
    /// the stages, read only after.
    private var failureText: String?

    init(config: GatewayConfig, handler: GatewayHandler, logger: Logger) throws {
        self.config = config
        self.handler = handler
        self.logger = logger
        live = PublishedSettings(LiveSettings(config))
        let table = ConnectionTable(capacity: config.maxConnections, ringCapacity: config.ringCapacity)
        self.table = table
        tls = config.servesTLS ? try TLSTransport(config: config, table: table, counters: counters, logger: logger) : nil
        tlsLinks = config.linksUseTLS
            ? try TLSTransport(config: config, table: table, counters: counters, logger: logger, client: true) : nil
        inboxCapacity = 2 * config.maxConnections + 1024
        rules = ManagedAtomic(AddressRules(allow: config.allow, deny: config.deny))
        limits = SharedAddressLimits(AddressLimits(maxPerAddress: config.maxConnsPerIP,
                                                   ratePerAddress: config.connRatePerIP, acceptRate: config.acceptRate))
        switch config.poller {
        case .epoll:
            poller = try EpollPoller()
        case .poll:
            poller = try PollPoller(connections: table.capacity)
        }
        closeRequests = StageInbox(name: "monitor", gate: \.monitorGate, capacity: inboxCapacity)
        let poller = self.poller
        // Monitor sleeps in the poller: a close request wakes it there, and only while it is.
        closeRequests.doorbell.waker = { poller.wake() }
        let (r, d, s) = (ReceiveStage(engine: self), DealStage(engine: self), SendStage(engine: self))
        workers = [r, d, s]
        (receive, deal, send) = (r, d, s)
        stages = [r.input, d.input, s.input]
        if let tls {
            let handshakes = (0..<config.tlsHandshakeThreads).map {
                TLSHandshakeStage(engine: self, tls: tls, index: $0)
            }
            tls.attach(handshakes)
            workers += handshakes as [AnyObject]
            stages += handshakes.map(\.input)
        }
        if config.listenAddresses.contains(where: { $0.webSocketPath != nil }) {
            webSocket = WebSocketTransport(engine: self, capacity: config.maxConnections, logger: logger)
        }
        if config.servesUDP { udp = UDPTransport(engine: self, capacity: config.maxConnections) }
    }

    deinit {
        pendingBytes.destroy()
        stopping.destroy()
        restarting.destroy()
        reconnectDeadline.destroy()
        exitStages.destroy()
    }

    /// Built once: Monitor walks it every tick, and a computed array would allocate each time.
    private(set) var stages: [StageInbox] = []

    /// Set when a graceful stop begins: Receive reads no more.
    var isStopping: Bool { stopping.load(ordering: .relaxed) }
    func beginStopping() { stopping.store(true, ordering: .relaxed) }

    /// Not accepting: handing over to a new process, or stopping.
    var isDraining: Bool { restarting.load(ordering: .relaxed) || isStopping }
    func beginRestartDrain(deadline: UInt64) {
        reconnectDeadline.store(deadline, ordering: .relaxed)
        restarting.store(true, ordering: .relaxed)
    }

    /// What stopped the engine by itself, once it has stopped.
    var failure: String? { exitStages.load(ordering: .acquiring) ? failureText : nil }
    /// Monitor only, before `releaseStages`.
    func recordFailure(_ why: String) { failureText = why }

    /// Set once every connection is gone: the stage threads return.
    var stagesShouldExit: Bool { exitStages.load(ordering: .relaxed) }
    func releaseStages() {
        exitStages.store(true, ordering: .sequentiallyConsistent)
        for stage in stages { stage.doorbell.ring() }
    }

    /// A reload (any thread): the live keys of `config` (LiveSettings.keys) take effect at each
    /// thread's next tick; the lists and per-address limits at the next accept.
    func reconfigure(_ config: GatewayConfig) throws(ConfigError) {
        // Certificates first: a bad one refuses the whole reload, and the running contexts stay.
        if let tls { try tls.reload(config) }
        if let tlsLinks { try tlsLinks.reload(config) }
        try live.publish { old throws(ConfigError) in try LiveSettings(config, after: old) }
        rules.store(AddressRules(allow: config.allow, deny: config.deny), ordering: .releasing)
        if limits.reconfigure(maxPerAddress: config.maxConnsPerIP, ratePerAddress: config.connRatePerIP,
                              acceptRate: config.acceptRate) {
            countOpenAddresses.store(true, ordering: .releasing)
        }
        for stage in stages { stage.doorbell.ring() }
    }

    /// The transport of a connection whose `transport` is not plain (Transport/Transport.swift).
    @inline(__always)
    func transport(of s: UnsafeMutablePointer<ConnectionSlot>) -> any Transport {
        switch TransportKind(rawValue: s.pointee.monitor.transport) {
        case .webSocket?, .webSocketTLS?: webSocket!
        case .tls?: tls!
        case .tlsClient?: tlsLinks!
        case .udp?: udp!
        case .plain?, nil: preconditionFailure("connection \(s.pointee.monitor.peer) has no transport")
        }
    }

    // MARK: closing, from any thread

    /// Closes at once: the first request wins and records its cause; Monitor detaches it.
    func requestClose(_ id: ConnectionID, cause: CloseCause) {
        let s = table.slot(id.index)
        guard s.holds(id) else { return }
        guard s.beginClosing(cause) else { return }
        closeRequests.post(s, id)
    }

    /// No more input will be read. The first call records `cause` and returns true;
    /// its caller then hands the connection to Deal, which deals what was received,
    /// and Send sends the replies before the connection closes with `cause`.
    func endInput(_ s: UnsafeMutablePointer<ConnectionSlot>, cause: CloseCause) -> Bool {
        s.endings.endInput(cause)
    }

    /// A frame length outside 18...max_frame: logged once for this connection, counted with its close.
    func protocolError(_ id: ConnectionID, length: UInt32) {
        let s = table.slot(id.index)
        let allowed = "\(FrameHeader.size)...\(config.maxFrame)"
        logger.warning("closing \(s.pointee.monitor.peer): frame length \(length) outside \(allowed)")
        requestClose(id, cause: .protocolError)
    }

    /// Why a new connection from `peer` is refused (allow/deny lists, per-address limits), or
    /// nil: then it is counted, and `addressCounted` must be set on its slot.
    func refusal(of peer: PeerAddress) -> CloseCause? {
        let rules = rules.load(ordering: .acquiring)
        if !rules.isEmpty, !rules.admits(peer) { return .denied }
        guard limits.isActive else { return nil }
        return limits.refusal(of: peer, now: MonotonicClock.nanoseconds())
    }

    // MARK: reclamation

    /// Frees the slot after a QSBR grace period, when no thread can still be using it.
    func scheduleReclaim(_ s: UnsafeMutablePointer<ConnectionSlot>) {
        s.pointee.table = Unmanaged.passUnretained(self).toOpaque()
        gw_call_rcu(s.pointer(to: \.rcuHead)!, { head in
            let s = (UnsafeMutableRawPointer(head!) - MemoryLayout<ConnectionSlot>.offset(of: \.rcuHead)!)
                .assumingMemoryBound(to: ConnectionSlot.self)
            Unmanaged<Engine>.fromOpaque(s.pointee.table!).takeUnretainedValue().reclaim(s)
        })
    }

    /// Runs on liburcu's call_rcu thread (or on Monitor for a link that never
    /// connected, which no other thread saw): releases everything the connection
    /// held, closes the descriptor (only now may its number be reused) and
    /// returns the slot with a new generation.
    func reclaim(_ s: UnsafeMutablePointer<ConnectionSlot>) {
        let index = UInt32((UnsafeMutableRawPointer(s) - UnsafeMutableRawPointer(table.slot(0))) / table.bytesPerSlot)
        for ring in [table.receiveRing(index), table.sendRing(index)] {
            for i in 0..<ring.count { pool.release(ring.peek(i).pointee.chunk) }
            ring.reset()
        }
        s.pointer(to: \.deal.backlog)!.pointee.release(pool: pool)
        let assembly = s.pointer(to: \.receive.assembly)!
        if assembly.pointee.heldBytes > 0 { pendingBytes.wrappingDecrement(by: assembly.pointee.heldBytes, ordering: .relaxed) }
        assembly.pointee.discard(pool: pool)
        if s.pointee.monitor.transport != TransportKind.plain.rawValue { transport(of: s).release(s, index: index) }
        if s.pointee.monitor.fd >= 0 { close(s.pointee.monitor.fd) }  // a UDP session has none of its own
        s.resetForReuse()
        table.release(index)
    }
}
