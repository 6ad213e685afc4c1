import Glibc

/// Which readiness API Monitor uses: epoll for many connections, poll for the
/// aggregation tier's few busy ones.
public enum PollerKind: String, CaseIterable, Sendable {
    case epoll
    case poll
}

/// What a gateway is in the tree (docs/LINK.md): an access server takes client
/// connections; an aggregation server takes links from access (or lower
/// aggregation) servers and carries them to its own upstream.
public enum GatewayRole: String, CaseIterable, Sendable {
    case access
    case aggregation
}

/// What a push does to a recipient whose send ring is full (docs/LINK.md).
public enum PushOverflow: String, CaseIterable, Sendable {
    /// Skip that recipient, counted.
    case drop
    /// Close it as a slow consumer, counted.
    case close
}

/// Everything the engine needs to start. Every numeric field has an allowed
/// range in `GatewayConfig.ranges`; `validate()` names the first key outside it.
public struct GatewayConfig: Sendable, Equatable {
    public var host = "127.0.0.1"
    /// 0 binds an ephemeral port; `Gateway.port` tells which.
    public var port = 7000
    public var poller = PollerKind.epoll
    /// access: clients connect; aggregation: lower nodes' links connect (needs `upstream`).
    public var role = GatewayRole.access
    /// Slots in the connection table; reserved as virtual memory, touched only when used.
    public var maxConnections = 100_000
    /// Largest frame accepted, header included.
    public var maxFrame = 1 << 20
    /// Seconds without a received byte before a connection is closed; 0 disables.
    public var idleTimeout = 300
    /// Seconds a connection may keep its send ring full while the socket is not writable.
    public var writeStallTimeout = 30
    /// Frame descriptors in each connection's receive ring and send ring (a power of two).
    public var ringCapacity = 32
    /// Monitor's clock tick, in milliseconds: the resolution of every timer wheel.
    public var tickMilliseconds = 100
    /// How long an idle stage thread spins (yielding) before it sleeps, in microseconds.
    /// 0 by default: on two shared cores a spinning stage takes CPU from the one doing
    /// the work, and inline hand-off already spares the wake-up at light load (docs/ARCHITECTURE.md).
    public var spinMicroseconds = 0
    /// Bytes of work per batch (read, dealt, written) that a thread may do itself
    /// for the next stage when that stage is asleep (run-to-completion); the rest
    /// is handed over. 0 keeps a strict pipeline. Counted in bytes, not
    /// connections, so that many small requests stay on one thread while a batch
    /// of big ones wakes the next stage and a second core joins in (docs/ARCHITECTURE.md).
    public var inlineBytes = 64 << 10
    /// listen(2) backlog.
    public var backlog = 4096
    /// Seconds a graceful stop may spend sending replies already produced
    /// (stragglers are then closed; the whole stop stays under drain_timeout + 1 s).
    public var drainTimeout = 3

    /// Upstream servers (core or aggregation) the access role forwards to; empty:
    /// frames go to the in-process handler instead.
    public var upstream: [Upstream] = []
    /// Links to each upstream server.
    public var upstreamLinks = 2
    /// This node's id in session ids (docs/LINK.md); nil: derived from host and port.
    public var nodeID: UInt32?
    /// Which of the processes serving one address this is (not a setting): a worker's index, and the
    /// hot restart generation in the bits above 8. Processes that run at the same time, a draining
    /// one and its successor or two workers, must be different nodes to the tiers above.
    public var nodeInstance: UInt32 = 0
    /// Milliseconds between heartbeats on a link; 3 missed ones close it.
    public var linkHeartbeatMilliseconds = 1000
    /// Cap of a link's reconnect back-off, in milliseconds (it starts at 1/16 of it and doubles).
    public var linkRetryMaxMilliseconds = 1000
    /// Milliseconds a client's frames may wait for room on its link; then every frame
    /// queued for it is answered `overloaded` and dropped (counted). 0: wait as long as it takes.
    public var maxQueueWait = 1000
    /// Seconds a forwarded client may go without the core binding it to a uid; then it
    /// is closed with cause auth_timeout. 0: no limit.
    public var authTimeout = 0
    /// Rooms one session may be in; later JOINs are ignored, counted.
    public var maxRoomsPerSession = 64
    public var pushOverflow = PushOverflow.close
    /// Bytes that may wait for one client's socket: replies, forwarded frames and pushes together.
    /// Past it a push does what push_overflow says and a reply closes the client (slow consumer).
    /// 0: `queueBound`'s default. Set, it must be at least 2 x max_frame.
    public var maxQueuedBytes = 0

    /// The bound in effect: max_queued_bytes, or by default the larger of 4 MiB and 4 x max_frame:
    /// a max_frame frame being written and room for another behind it while dealing goes on (it
    /// pauses at half the bound), and a burst of 10,000 small pushes.
    public var queueBound: Int { maxQueuedBytes > 0 ? maxQueuedBytes : max(4 << 20, 4 * maxFrame) }
    /// Seconds a frame that has begun may take to complete (slowloris); 0: no limit.
    public var frameTimeout = 30
    /// Bytes all connections together may hold in incomplete frames; past it, the
    /// connections holding the most are closed first. 0: no limit.
    public var maxPendingBytes = 256 << 20
    /// Connections open at once from one address (IPv4 /32, IPv6 /64); 0: no limit.
    public var maxConnsPerIP = 0
    /// New connections a second from one address (a token bucket of one second); 0: no limit.
    public var connRatePerIP = 0
    /// New connections a second on the listener; 0: no limit.
    public var acceptRate = 0
    /// Networks allowed to connect (empty: all) and denied (checked first).
    public var allow: [CIDR] = []
    public var deny: [CIDR] = []
    /// Frames and bytes a second one connection may send (token buckets of one second);
    /// beyond them it is closed with cause flood. 0: no limit.
    public var floodFramesPerSecond = 0
    public var floodBytesPerSecond = 0
    /// The listener expects a PROXY protocol header (v1 or v2) first on every connection,
    /// from a balancer; limits, lists, logs and OPENED then see the client it names.
    public var proxyProtocol = false
    /// Seconds the PROXY header may take to arrive.
    public var proxyTimeout = 5
    /// Bytes the rings, assemblies and read blocks may hold; past it the gateway stops
    /// reading clients (links go on) until it has drained to three quarters. 0: no limit.
    public var maxBufferedBytes = 1 << 30

    public init() {}

    /// Addresses to listen on, IPv4 or IPv6 (`--listen`, repeatable); empty: `host`:`port`.
    public var listen: [ListenAddress] = []

    /// One listening address; with a path, a WebSocket listener (`ws://HOST:PORT/PATH`, docs/WEBSOCKET.md),
    /// over TLS too when `tls` (`wss://HOST:PORT/PATH`, docs/TLS.md).
    public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
        public var host: String
        public var port: Int
        public var webSocketPath: String?
        /// A TLS listener (`tls://HOST:PORT`, docs/TLS.md).
        public var tls: Bool
        /// A UDP socket (`udp://HOST:PORT`, docs/UDP.md).
        public var udp: Bool
        public init(host: String, port: Int, webSocketPath: String? = nil, tls: Bool = false, udp: Bool = false) {
            self.host = host
            self.port = port
            self.webSocketPath = webSocketPath
            self.tls = tls
            self.udp = udp
        }
        public var description: String {
            let address = host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
            return webSocketPath.map { (tls ? "wss://" : "ws://") + address + $0 }
                ?? (tls ? "tls://" : udp ? "udp://" : "") + address
        }
    }

    /// TLS listeners' certificates and options (docs/TLS.md).
    public var tls = TLSSettings()
    /// Seconds a TLS handshake may take; then the connection is closed (tls_handshake_timeout).
    public var tlsHandshakeTimeout = 10
    /// TLS handshakes in progress at once (each holds OpenSSL's handshake state); past it new ones are refused.
    public var tlsMaxHandshakes = 10_000
    /// Threads TLS listeners' handshakes run on (TLSHandshakeStage): one per CPU, at most 8, by default.
    public var tlsHandshakeThreads = min(8, max(1, Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))))
    /// Some listener speaks TLS.
    public var servesTLS: Bool { listenAddresses.contains { $0.tls } }

    /// `Origin` values WebSocket clients may come from (`--ws-origin`, repeatable); none when empty,
    /// unless `webSocketAnyOrigin`. A request without `Origin` (not from a browser) is not checked.
    public var webSocketOrigins: [String] = []
    public var webSocketAnyOrigin = false
    /// Seconds a WebSocket client has to complete its opening handshake.
    public var webSocketHandshakeTimeout = 10

    /// Seconds a UDP session may go without a datagram before it is closed (docs/UDP.md).
    public var udpIdleTimeout = 30
    /// The largest datagram payload the gateway sends (docs/UDP.md): an Ethernet MTU of 1,500 less the
    /// IPv4 and UDP headers, so that no reply is fragmented on a common path.
    public var udpMaxDatagram = 1472
    /// Some listener is a UDP socket.
    public var servesUDP: Bool { listenAddresses.contains { $0.udp } }

    /// What the listeners bind: `listen`, or `host`:`port` when it is empty.
    public var listenAddresses: [ListenAddress] { listen.isEmpty ? [ListenAddress(host: host, port: port)] : listen }

    /// One upstream server's address; links to a `tls` one (`tls://HOST:PORT`) speak TLS.
    public struct Upstream: Sendable, Equatable, CustomStringConvertible {
        public var host: String
        public var port: Int
        public var tls: Bool
        public init(host: String, port: Int, tls: Bool = false) {
            self.host = host
            self.port = port
            self.tls = tls
        }
        public var description: String { (tls ? "tls://" : "") + "\(host):\(port)" }
    }

    /// Links over TLS: the CA file that must have signed the upstream's certificate (nil: the system's
    /// store), and this node's certificate and key for an upstream that requires one (mTLS).
    public var upstreamCA: String?
    public var upstreamCert: String?
    public var upstreamKey: String?
    /// Some upstream server is reached over TLS.
    public var linksUseTLS: Bool { upstream.contains { $0.tls } }

    /// The node id in effect: the configured one, or a hash of the listening address; for an
    /// instance other than 0, that hashed again with the instance.
    public func effectiveNodeID(port actual: Int) -> UInt32 {
        func fnv1a(_ text: String) -> UInt32 {  // stable across runs and builds
            var hash: UInt32 = 2_166_136_261
            for byte in text.utf8 { hash = (hash ^ UInt32(byte)) &* 16_777_619 }
            return hash
        }
        let base = nodeID ?? fnv1a("\(host):\(actual)")
        return nodeInstance == 0 ? base : fnv1a("\(base)#\(nodeInstance)")
    }

    /// Allowed ranges, keyed by the configuration key (the YAML / environment spelling).
    public static var ranges: [(key: String, range: ClosedRange<Int>, path: WritableKeyPath<GatewayConfig, Int>)] {
        [
        ("port", 0...65535, \.port),
        ("max_connections", 1...50_000_000, \.maxConnections),
        ("max_frame", FrameHeader.size...(64 << 20), \.maxFrame),
        ("idle_timeout", 0...86_400, \.idleTimeout),
        ("write_stall_timeout", 1...3_600, \.writeStallTimeout),
        ("ring_capacity", 4...4096, \.ringCapacity),
        ("tick_ms", 1...1000, \.tickMilliseconds),
        ("spin_us", 0...100_000, \.spinMicroseconds),
        ("inline_bytes", 0...(1 << 30), \.inlineBytes),
        ("backlog", 1...65535, \.backlog),
        ("drain_timeout", 0...604_800, \.drainTimeout),
        ("upstream_links", 1...64, \.upstreamLinks),
        ("link_heartbeat_ms", 10...60_000, \.linkHeartbeatMilliseconds),
        ("link_retry_max_ms", 10...60_000, \.linkRetryMaxMilliseconds),
        ("max_queue_wait", 0...600_000, \.maxQueueWait),
        ("auth_timeout", 0...86_400, \.authTimeout),
        ("max_rooms_per_session", 1...65_535, \.maxRoomsPerSession),
        ("frame_timeout", 0...86_400, \.frameTimeout),
        ("max_pending_bytes", 0...(1 << 40), \.maxPendingBytes),
        ("max_conns_per_ip", 0...1_000_000, \.maxConnsPerIP),
        ("conn_rate_per_ip", 0...1_000_000, \.connRatePerIP),
        ("accept_rate", 0...10_000_000, \.acceptRate),
        ("flood_frames_per_s", 0...100_000_000, \.floodFramesPerSecond),
        ("flood_bytes_per_s", 0...(1 << 40), \.floodBytesPerSecond),
        ("proxy_timeout", 1...3_600, \.proxyTimeout),
        ("max_buffered_bytes", 0...(1 << 44), \.maxBufferedBytes),
        ("max_queued_bytes", 0...(1 << 40), \.maxQueuedBytes),
        ("ws_handshake_timeout", 1...3_600, \.webSocketHandshakeTimeout),
        ("udp_idle_timeout", 1...86_400, \.udpIdleTimeout),
        ("udp_max_datagram", 64...65_507, \.udpMaxDatagram),
        ("tls_handshake_timeout", 1...3_600, \.tlsHandshakeTimeout),
        ("tls_max_handshakes", 1...10_000_000, \.tlsMaxHandshakes),
        ("tls_handshake_threads", 1...64, \.tlsHandshakeThreads),
        ]
    }

    /// Throws for the first value outside its allowed range.
    public func validate() throws(ConfigError) {
        for entry in Self.ranges where !entry.range.contains(self[keyPath: entry.path]) {
            throw ConfigError(key: entry.key, value: String(self[keyPath: entry.path]),
                              allowed: "\(entry.range.lowerBound)...\(entry.range.upperBound)")
        }
        if maxQueuedBytes != 0 && maxQueuedBytes < 2 * maxFrame {
            throw ConfigError(key: "max_queued_bytes", value: String(maxQueuedBytes),
                              allowed: "0 (the default) or at least 2 x max_frame (\(2 * maxFrame))")
        }
        if ringCapacity & (ringCapacity - 1) != 0 {
            throw ConfigError(key: "ring_capacity", value: String(ringCapacity),
                              allowed: "a power of two in 4...4096")
        }
        if upstream.count * upstreamLinks > 1024 {
            throw ConfigError(key: "upstream", value: "\(upstream.count) servers x \(upstreamLinks) links",
                              allowed: "at most 1024 links in all")
        }
        if role == .aggregation && servesUDP {
            throw ConfigError(key: "listen", value: "udp://", allowed: "TCP, TLS or WebSocket listeners on an aggregation "
                              + "server (its listeners take links from lower nodes; clients' UDP ends at access nodes)")
        }
        if role == .aggregation && upstream.isEmpty {
            throw ConfigError(key: "role", value: role.rawValue, allowed: "access, or aggregation with upstream set")
        }
        if (upstreamCert == nil) != (upstreamKey == nil) {
            throw ConfigError(key: upstreamCert == nil ? "upstream_cert" : "upstream_key", value: "none",
                              allowed: "--upstream-cert and --upstream-key together")
        }
        if servesTLS && tls.pairs.isEmpty {
            throw ConfigError(key: "tls_cert", value: "none",
                              allowed: "a certificate and key (--tls-cert PATH --tls-key PATH) for tls:// listeners")
        }
        if host.isEmpty {
            throw ConfigError(key: "host", value: "", allowed: "an IPv4 address such as 127.0.0.1")
        }
    }
}

/// A configuration value outside what the engine accepts.
public struct ConfigError: Error, Equatable, CustomStringConvertible {
    public var key: String
    public var value: String
    public var allowed: String

    public init(key: String, value: String, allowed: String) {
        self.key = key
        self.value = value
        self.allowed = allowed
    }

    public var description: String { "invalid \(key) '\(value)': allowed \(allowed)" }
}
