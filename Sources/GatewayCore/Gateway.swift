import Atomics
import CLinux
import CURCU
import Glibc
import Logging

/// The access server: four threads (Monitor, Receive, Deal, Send) around a
/// preallocated connection table, speaking the frame protocol of
/// docs/PROTOCOL.md to clients and handing frames to a `GatewayHandler`.
public final class Gateway: @unchecked Sendable {  // start/stop are called from one controlling thread
    public let config: GatewayConfig
    let engine: Engine
    /// The session-ticket keys of the TLS listeners (tests move them to a later epoch), nil without any.
    var ticketKeys: TicketKeys? { engine.tls?.tickets }
    /// Set once by start(), never cleared: drainForRestart and reconfigure read it from other threads
    /// (admin, control socket), which exist only after start. `running` says whether stop() is still due.
    private(set) var monitor: MonitorThread?
    private let running = ManagedAtomic<Bool>(false)
    private var threads: [OSThread] = []
    public private(set) var port = 0
    /// Every listener's port, in the order of `listenAddresses` (ports given as 0 are chosen at start).
    public private(set) var ports: [Int] = []

    /// Checks the configuration and reserves the connection table; binds nothing yet.
    public init(config: GatewayConfig, handler: GatewayHandler = EchoHandler(),
                logger: Logger = Logger(label: "gateway")) throws {
        try config.validate()
        self.config = config
        engine = try Engine(config: config, handler: handler, logger: logger)
    }

    /// This node's id in session ids and HELLO (docs/LINK.md), once started with forwarding; else 0.
    public var nodeID: UInt32 { engine.deal.uplinks?.node ?? 0 }

    /// Most listening sockets one gateway serves on.
    public static let maxListeners = 64

    /// The listening sockets, for a hot restart to hand over (SCM_RIGHTS); empty once stopped accepting.
    public private(set) var listenerDescriptors: [Int32] = []
    /// The UDP sockets, closed once the threads have stopped (Send may write to them to the end).
    private var datagramDescriptors: [Int32] = []

    /// "127.0.0.1:7000" for each listening socket, as bound (a port given as 0 shows the one chosen).
    public static func addresses(of listeners: [Int32]) -> [String] {
        listeners.map { fd in (try? Listener.boundAddress(fd)).map(\.description) ?? "descriptor \(fd)" }
    }

    /// Binds, listens and starts the threads. With `inherited` listening sockets (from the process
    /// this one takes over, or from a master process), serves on those instead of binding its own.
    public func start(inheriting inherited: [Int32] = []) throws {
        precondition(monitor == nil, "Gateway.start() called twice")
        // writev to a connection the peer has reset must fail with EPIPE, not kill the process.
        signal(SIGPIPE, SIG_IGN)
        var listeners: [Listener] = []
        var datagramSockets: [UDPSocket] = []
        // UDP sockets are bound by every process (an SO_REUSEPORT group), never inherited.
        let streamAddresses = config.listenAddresses.filter { !$0.udp }
        do {
            for address in config.listenAddresses where address.udp {
                datagramSockets.append(try UDPSocket(host: address.host, port: address.port))
            }
            if inherited.isEmpty {
                for address in streamAddresses {
                    listeners.append(try Listener(host: address.host, port: address.port, backlog: config.backlog))
                }
            } else {
                guard inherited.count <= Self.maxListeners else {
                    throw SocketError("\(inherited.count) listening sockets (at most \(Self.maxListeners))", EINVAL)
                }
                for fd in inherited { listeners.append(try Listener(adopting: fd)) }
            }
        } catch {
            for l in listeners { close(l.fd) }
            for u in datagramSockets { close(u.fd) }
            throw error
        }
        // A WebSocket path and TLS are properties of the address configured; an adopted socket is matched by port.
        let addresses = streamAddresses
        for i in listeners.indices {
            let configured = addresses.first { $0.port == listeners[i].port && $0.port != 0 }
                ?? (i < addresses.count ? addresses[i] : nil)
            listeners[i].address.webSocketPath = configured?.webSocketPath
            listeners[i].address.tls = configured?.tls ?? false
        }
        engine.webSocket?.listen(on: listeners.map(\.address))
        // In the order of listenAddresses: stream listeners and UDP sockets each keep theirs.
        var (nextStream, nextDatagram) = (listeners.makeIterator(), datagramSockets.makeIterator())
        ports = config.listenAddresses.map { $0.udp ? nextDatagram.next()!.port : nextStream.next()?.port ?? 0 }
        if !inherited.isEmpty { ports = listeners.map(\.port) + datagramSockets.map(\.port) }
        port = ports[0]
        listenerDescriptors = listeners.map(\.fd)
        datagramDescriptors = datagramSockets.map(\.fd)
        let receiver = engine.udp.map { UDPReceiver(engine: self.engine, udp: $0, sockets: datagramSockets) }
        if let uplinks = engine.deal.uplinks {
            uplinks.node = config.effectiveNodeID(port: port)
            let servers = config.upstream.map(\.description).joined(separator: ",")
            engine.logger.info(
                "\(config.role) node id \(uplinks.node); forwarding to \(servers), \(config.upstreamLinks) links each")
        }
        let monitor = try MonitorThread(engine: engine, listeners: listeners, udp: receiver, shared: !inherited.isEmpty)
        self.monitor = monitor
        running.store(true, ordering: .releasing)
        let engine = engine
        threads = [
            OSThread(name: "gw-receive") { engine.receive.runLoop(engine: engine) },
            OSThread(name: "gw-deal") { engine.deal.runLoop(engine: engine) },
            OSThread(name: "gw-send") { engine.send.runLoop(engine: engine) },
        ]
        for (i, stage) in (engine.tls?.stages ?? []).enumerated() {
            threads.append(OSThread(name: "gw-tls-\(i)") { stage.runLoop(engine: engine) })
        }
        threads.append(OSThread(name: "gw-monitor") { monitor.run() })
        let bound = listeners.map(\.address.description).joined(separator: ", ")
        engine.logger.debug("listening on \(bound) with \(config.poller), up to \(config.maxConnections) connections")
    }

    /// Graceful stop: no new connections; replies already produced are sent;
    /// every connection is closed within `drain_timeout`; the threads are joined.
    public func stop() {
        guard let monitor, running.exchange(false, ordering: .acquiringAndReleasing) else { return }
        monitor.requestStop()
        for thread in threads { thread.join() }
        threads = []
        // Slots handed to call_rcu are reclaimed before the table goes away.
        gw_rcu_barrier()
        for fd in datagramDescriptors { close(fd) }
        datagramDescriptors = []
    }

    deinit { stop() }

    /// Hand-over to a new process that shares the listeners: stop accepting, ask each client to
    /// reconnect (spread over drain_timeout), then stop as `stop()` does; `hasStopped` tells when.
    public func drainForRestart() {
        monitor?.requestRestartDrain()
    }

    /// A reload: the keys of LiveSettings.keys take effect (timers set from now on use the new
    /// lengths); the rest of `config` is ignored here, the caller says those need a restart.
    /// Returns once connections are admitted under the new lists and limits (Monitor's next tick);
    /// the other threads take the rest at their next tick.
    public func reconfigure(_ config: GatewayConfig) throws(ConfigError) {
        try config.validate()
        guard config.upstream.isEmpty == self.config.upstream.isEmpty else {
            throw ConfigError(key: "upstream", value: config.upstream.isEmpty ? "none" : "servers",
                              allowed: "servers while forwarding, none while echoing: switching needs a restart")
        }
        try engine.reconfigure(config)
        guard running.load(ordering: .acquiring), !engine.stagesShouldExit else { return }
        let version = engine.live.currentVersion
        let deadline = MonotonicClock.nanoseconds() &+ 100 * UInt64(config.tickMilliseconds) * 1_000_000
        while engine.acceptTakenVersion.load(ordering: .acquiring) != version, !engine.isStopping,
              MonotonicClock.nanoseconds() < deadline {
            usleep(1000)
        }
    }

    /// Reads the TLS certificates, keys and CA files `config` names (for TLS listeners and links), as
    /// start-up and a reload would; throws naming the key and the reason.
    public static func checkTLS(_ config: GatewayConfig) throws(ConfigError) {
        if config.servesTLS { _ = try TLSServerContext(config.tls, tickets: TicketKeys(file: config.tls.ticketKeyFile)) }
        if config.linksUseTLS {
            _ = try TLSServerContext(clientCA: config.upstreamCA, certificate: config.upstreamCert, key: config.upstreamKey)
        }
    }

    /// The keys `reconfigure` applies while running.
    public static var liveKeys: [String] { LiveSettings.keys }

    /// Taking connections: false until the listeners are watched (a forwarding gateway on shared
    /// listeners waits for its first link), while paused for want of descriptors, and once draining.
    public var isAccepting: Bool { engine.accepting.load(ordering: .acquiring) }

    /// Not accepting: draining for a restart, or stopping.
    public var isDraining: Bool { engine.isDraining }

    /// Every connection is gone and the threads are returning (after a drain); `stop()` joins them.
    public var hasStopped: Bool { engine.stagesShouldExit }

    /// Why the gateway stopped by itself (its poller failed, logged as critical), or nil: `hasStopped`
    /// is then true too, and a process should exit with a failure.
    public var failure: String? { engine.failure }

    /// Counters since start, and the levels of rings and inboxes (read off the table: O(slots)).
    public func stats() -> GatewayStats {
        var s = engine.counters.snapshot(connectionsOpen: engine.table.inUse,
                                         pendingBytes: engine.pendingBytes.load(ordering: .relaxed),
                                         bufferedBytes: engine.pool.bytesInUse)
        s.tlsHandshaking = UInt64((engine.tls?.handshaking ?? 0) + (engine.tlsLinks?.handshaking ?? 0))
        s.linksConfigured = UInt64(engine.live.current.linkTargets.count { $0 != nil })
        if let udp = engine.udp { s.udp = udp.counters.snapshot }
        let table = engine.table
        // Read from outside the rings' two threads, a count can be taken mid-pop: past the capacity, it is.
        func level(_ ring: FrameRing) -> UInt64 { ring.count <= config.ringCapacity ? UInt64(ring.count) : 0 }
        for index in table.usedRange {
            s.receiveRingFrames += level(table.receiveRing(index))
            s.sendRingFrames += level(table.sendRing(index))
        }
        s.ringsHeld = UInt64(table.rings.inUse)
        let inboxes = [engine.receive.input, engine.deal.input, engine.send.input, engine.closeRequests]
        for (i, inbox) in inboxes.enumerated() { s.inboxDepths[i] = UInt64(inbox.inbox.pending) }
        return s
    }

    /// Link heartbeat round trips (Deal writes; any thread reads what is new).
    public var roundTrips: RoundTrips { engine.roundTrips }
}
