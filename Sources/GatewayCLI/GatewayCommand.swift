import ArgumentParser
import Foundation
import GatewayCore
import Logging

/// `gateway`: the access server with the echo handler, until SIGTERM or SIGINT.
public struct GatewayCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "gateway",
        abstract: """
            TCP access gateway: frames clients' messages and forwards them upstream (--upstream) or answers \
            each with the echo handler; with --role aggregation it carries access servers' links upstream.
            """,
        discussion: """
            Each setting comes from, lowest precedence first: its default, the YAML file given by \
            --config (top-level snake_case keys, e.g. `max_connections: 50000`), the environment \
            variable GATEWAY_<KEY> (e.g. GATEWAY_MAX_CONNECTIONS=50000), then its flag. A bad value \
            stops start-up with one line on stderr and exit code 2; failing to listen exits with 1. \
            SIGTERM or SIGINT stops gracefully: replies already produced are sent, then exit 0.

            Reload: SIGHUP (or POST /reload on --admin) reads the file and the environment again. These keys \
            apply while running: \(Reloads.liveKeys.sorted().joined(separator: ", ")) (timers already \
            running keep their length; upstream only between lists of servers, not to or from none). \
            Every other key needs a restart: a reload logs which changed and keeps their running values. \
            A bad file changes nothing and is logged with its key and what it allows.

            Hot restart: start the new binary with --take-over PATH (the running one's --control-socket); \
            it takes the listening sockets, serves, and the old one asks its clients to reconnect, spread \
            over drain_timeout, then exits. No connection attempt is refused. See docs/OPERATIONS.md.
            """
    )

    @Option(help: .setting("host", "IPv4 address to listen on.", default: GatewayConfig().host,
                           allowed: "an IPv4 address", valueName: "address"))
    var host: String?

    @Option(help: .setting("port", "TCP port to listen on; 0 picks a free one."))
    var port: String?

    @Option(help: .setting("listen", "Address to listen on, repeatable (IPv4 or [IPv6]); given, it replaces --host/--port.",
                           default: "host:port", allowed: SettingParsers.listenAllowed, valueName: "addr:port"))
    var listen: [String] = []

    @Option(help: .setting("ws_origin", "Origin a browser's WebSocket may come from, repeatable; none given: "
                           + "no browser origin is allowed (a request without Origin is).", default: "none",
                           allowed: SettingParsers.originAllowed, valueName: "origin"))
    var wsOrigin: [String] = []

    @Flag(inversion: .prefixedNo,
          help: ArgumentHelp("Let a WebSocket come from any Origin. File key ws_any_origin, "
                             + "GATEWAY_WS_ANY_ORIGIN; default off."))
    var wsAnyOrigin: Bool?

    @Option(help: .setting("ws_handshake_timeout", "Seconds a WebSocket client has for its opening handshake."))
    var wsHandshakeTimeout: String?

    @Option(help: .setting("udp_idle_timeout", "Seconds a UDP session may go without a datagram before it closes."))
    var udpIdleTimeout: String?

    @Option(help: .setting("udp_max_datagram", "Largest datagram payload sent to UDP clients, bytes (1472: one "
                           + "unfragmented IPv4 datagram on Ethernet)."))
    var udpMaxDatagram: String?

    @Option(help: .setting("poller", "Readiness API: epoll for many connections, poll for a few busy ones.",
                           default: GatewayConfig().poller.rawValue, allowed: PollerKind.allowedNames,
                           valueName: PollerKind.allowedNames))
    var poller: String?

    @Option(help: .setting("role",
                           "access: clients connect; aggregation: access servers' links connect (needs --upstream).",
                           default: GatewayConfig().role.rawValue, allowed: GatewayRole.allowedNames,
                           valueName: GatewayRole.allowedNames))
    var role: String?

    @Option(help: .setting("max_connections", "Slots in the connection table."))
    var maxConnections: String?

    @Option(help: .setting("max_frame", "Largest frame accepted, header included, in bytes."))
    var maxFrame: String?

    @Option(help: .setting("idle_timeout", "Seconds without a received byte before a connection is closed; 0 disables."))
    var idleTimeout: String?

    @Option(help: .setting("write_stall_timeout", "Seconds a client may leave its replies unread before it is closed."))
    var writeStallTimeout: String?

    @Option(help: .setting("ring_capacity", "Frames queued per connection and direction; a power of two."))
    var ringCapacity: String?

    @Option(help: .setting("tick_ms", "Timer resolution, in milliseconds."))
    var tickMs: String?

    @Option(help: .setting("spin_us", "Microseconds an idle stage thread spins before it sleeps."))
    var spinUs: String?

    @Option(help: .setting("inline_bytes", "Bytes of work per batch a thread may do itself for the next, sleeping stage; 0: strict pipeline."))
    var inlineBytes: String?

    @Option(help: .setting("backlog", "listen(2) backlog."))
    var backlog: String?

    @Option(help: .setting("drain_timeout", "Seconds a graceful stop may spend sending replies already produced; a hot restart asks clients to reconnect over it."))
    var drainTimeout: String?

    @Option(help: .setting("upstream", "Core or aggregation servers to forward to; none: answer with the echo handler.",
                           default: "none", allowed: "IPv4 [tls://]HOST:PORT[,...]", valueName: "servers"))
    var upstream: String?

    @Option(help: .setting("upstream_ca", "Links to tls:// upstreams: CA file the server's certificate must chain to; "
                           + "its address must be in the certificate.", default: "the system's store",
                           allowed: "a PEM file", valueName: "path"))
    var upstreamCa: String?

    @Option(help: .setting("upstream_cert", "Links to tls:// upstreams: this node's certificate, for an upstream that "
                           + "requires one (--tls-client-ca there).", default: "none", allowed: "a PEM file",
                           valueName: "path"))
    var upstreamCert: String?

    @Option(help: .setting("upstream_key", "The private key of --upstream-cert.", default: "none",
                           allowed: "a PEM file", valueName: "path"))
    var upstreamKey: String?

    @Option(help: .setting("upstream_links", "Links to each upstream server."))
    var upstreamLinks: String?

    @Option(help: .setting("node_id", "This node's id in session ids.", default: "derived from host and port",
                           allowed: "0...4294967295", valueName: "n"))
    var nodeId: String?

    @Option(help: .setting("link_heartbeat_ms", "Milliseconds between link heartbeats; 3 missed close the link."))
    var linkHeartbeatMs: String?

    @Option(help: .setting("link_retry_max_ms", "Cap of a link's reconnect back-off, in milliseconds."))
    var linkRetryMaxMs: String?

    @Option(help: .setting("max_queue_wait",
                           "Milliseconds a frame may wait for room on its link before it is answered overloaded; "
                           + "0: no limit."))
    var maxQueueWait: String?

    @Option(help: .setting("auth_timeout",
                           "Seconds a forwarded client may stay unbound (no BIND from the core) before it is closed; "
                           + "0: off."))
    var authTimeout: String?

    @Option(help: .setting("max_rooms_per_session", "Rooms one session may be in; later JOINs are ignored, counted."))
    var maxRoomsPerSession: String?

    @Option(help: .setting("push_overflow",
                           "A push to a session whose send ring is full: close it (slow consumer) or drop.",
                           default: GatewayConfig().pushOverflow.rawValue, allowed: PushOverflow.allowedNames,
                           valueName: PushOverflow.allowedNames))
    var pushOverflow: String?

    @Option(help: .setting("max_queued_bytes",
                           "Bytes that may wait for one client's socket (replies, forwarded frames, pushes); 0: the larger of "
                           + "4 MiB and 4 x max_frame; else at least 2 x max_frame."))
    var maxQueuedBytes: String?

    @Option(help: .setting("frame_timeout", "Seconds a frame that has begun may take to complete; 0: no limit."))
    var frameTimeout: String?

    @Option(help: .setting("max_pending_bytes",
                           "Bytes all incomplete frames may hold; past it the biggest holders are closed. 0: no limit."))
    var maxPendingBytes: String?

    @Option(help: .setting("max_conns_per_ip", "Connections open at once from one address (IPv4 /32, IPv6 /64); 0: off."))
    var maxConnsPerIp: String?

    @Option(help: .setting("conn_rate_per_ip", "New connections a second from one address; 0: off."))
    var connRatePerIp: String?

    @Option(help: .setting("accept_rate", "New connections a second on the listener; 0: off."))
    var acceptRate: String?

    @Option(help: .setting("allow", "Networks allowed to connect; none given: all.", default: "all",
                           allowed: "CIDRs, IPv4 or IPv6, comma-separated", valueName: "networks"))
    var allow: String?

    @Option(help: .setting("deny", "Networks refused at accept (checked before allow).", default: "none",
                           allowed: "CIDRs, IPv4 or IPv6, comma-separated", valueName: "networks"))
    var deny: String?

    @Option(help: .setting("flood_frames_per_s", "Frames a second one connection may send; beyond: closed (flood). 0: off."))
    var floodFramesPerS: String?

    @Option(help: .setting("flood_bytes_per_s", "Bytes a second one connection may send; beyond: closed (flood). 0: off."))
    var floodBytesPerS: String?

    @Flag(inversion: .prefixedNo,
          help: ArgumentHelp("Expect a PROXY protocol v1/v2 header first on every connection (behind HAProxy, "
                             + "LVS or a cloud balancer). File key proxy_protocol, GATEWAY_PROXY_PROTOCOL; "
                             + "default off."))
    var proxyProtocol: Bool?

    @Option(help: .setting("proxy_timeout", "Seconds a connection's PROXY header may take to arrive."))
    var proxyTimeout: String?

    @Option(help: .setting("max_buffered_bytes",
                           "Bytes buffers may hold; past it clients are not read until three quarters drain. 0: off."))
    var maxBufferedBytes: String?

    @Option(help: .setting("tls_cert", "Certificate chain (PEM) for tls:// listeners, repeatable: the first is the "
                           + "default, SNI picks another whose names match. Re-read on reload.", default: "none",
                           allowed: "PEM files, one per --tls-key", valueName: "path"))
    var tlsCert: [String] = []

    @Option(help: .setting("tls_key", "Private key (PEM) of the --tls-cert in the same position.", default: "none",
                           allowed: "PEM files, one per --tls-cert", valueName: "path"))
    var tlsKey: [String] = []

    @Option(help: .setting("tls_client_ca", "Require client certificates signed by these CAs (mTLS).",
                           default: "none", allowed: "a PEM file", valueName: "path"))
    var tlsClientCa: String?

    @Option(help: .setting("tls_alpn", "ALPN protocols offered on tls:// listeners, most preferred first.",
                           default: "none", allowed: "names, comma-separated", valueName: "protocols"))
    var tlsAlpn: String?

    @Option(help: .setting("tls_ticket_key_file", "Secret the session-ticket keys are derived from, shared by every "
                           + "process that should resume the others' sessions (workers share their master's "
                           + "without it). Re-read on reload.", default: "a random secret per process",
                           allowed: "a file of 32...64 random bytes", valueName: "path"))
    var tlsTicketKeyFile: String?

    @Option(help: .setting("tls_handshake_timeout", "Seconds a TLS handshake may take before the connection is closed."))
    var tlsHandshakeTimeout: String?

    @Option(help: .setting("tls_max_handshakes", "TLS handshakes in progress at once; past it new ones are refused."))
    var tlsMaxHandshakes: String?

    @Option(help: .setting("tls_handshake_threads", "Threads TLS listeners' handshakes run on (one per CPU, "
                           + "at most 8, by default)."))
    var tlsHandshakeThreads: String?

    @Option(help: .setting("stats_interval", "Seconds between stats log lines; 0 disables them.",
                           default: "\(Settings().statsInterval)",
                           allowed: "\(Settings.statsIntervalRange.lowerBound)...\(Settings.statsIntervalRange.upperBound)"))
    var statsInterval: String?

    @Option(help: .setting("log_level", "Least severe level logged to stderr.", default: "\(Settings().logLevel)",
                           allowed: Logger.Level.allowedNames, valueName: "level"))
    var logLevel: String?

    @Option(help: .setting("log_format", "Log lines as text, or one JSON object per line.",
                           default: LogFormat.text.rawValue, allowed: LogFormat.allowedNames,
                           valueName: LogFormat.allowedNames))
    var logFormat: String?

    @Option(help: .setting("admin", "Admin endpoint (metrics, health, stats, drain, reload); loopback only "
                           + "unless --admin-public.", default: "none", allowed: "one ADDR:PORT",
                           valueName: "addr:port"))
    var admin: String?

    @Flag(inversion: .prefixedNo,
          help: ArgumentHelp("Let --admin bind a non-loopback address. File key admin_public, "
                             + "GATEWAY_ADMIN_PUBLIC; default off."))
    var adminPublic: Bool?

    @Option(help: .setting("control_socket", "Unix socket where a new process started with --take-over asks "
                           + "for the listeners (hot restart).", default: "none", allowed: "a path of 1...107 bytes",
                           valueName: "path"))
    var controlSocket: String?

    @Option(help: ArgumentHelp("Hot restart: take the listening sockets of the gateway whose --control-socket is "
                               + "PATH, serve, then let it drain (its clients are asked to reconnect).",
                               valueName: "path"))
    var takeOver: String?

    @Option(help: .setting("handover", "With --take-over: connections moves the old process's live connections "
                           + "with their state (docs/HANDOVER.md); drain asks them to reconnect.",
                           default: "connections", allowed: HandoverMode.allowedNames))
    var handover: String?

    @Option(help: .setting("handover_timeout", "Seconds the old process may spend handing connections over; "
                           + "those not moved by then drain.", default: "\(Settings().handoverTimeout)",
                           allowed: "\(Settings.handoverTimeoutRange.lowerBound)...\(Settings.handoverTimeoutRange.upperBound)"))
    var handoverTimeout: String?

    @Option(help: .setting("workers", "Worker processes, each on its own listening sockets held by a master; "
                           + "1: no master; auto: one per core this process may use (affinity, cgroup quota).",
                           default: "1", allowed: "\(Settings.workersRange) or auto"))
    var workers: String?

    @Option(help: ArgumentHelp("YAML file of settings, keyed as the File keys above; SIGHUP re-reads it (see "
                               + "\"Reload\" below).", valueName: "file"))
    var config: String?

    public init() {}

    /// Values are taken as text, not typed by ArgumentParser, so that a bad flag is
    /// reported like a bad file or environment value: one line naming key and range.
    var flags: [String: String] {
        let values: [String: String?] = [
            "host": host, "port": port, "listen": listen.isEmpty ? nil : listen.joined(separator: ","), "poller": poller, "role": role, "max_connections": maxConnections,
            "max_frame": maxFrame, "idle_timeout": idleTimeout, "write_stall_timeout": writeStallTimeout,
            "ring_capacity": ringCapacity, "tick_ms": tickMs, "spin_us": spinUs, "inline_bytes": inlineBytes, "backlog": backlog,
            "drain_timeout": drainTimeout, "stats_interval": statsInterval, "log_level": logLevel, "log_format": logFormat,
            "upstream": upstream, "upstream_links": upstreamLinks, "node_id": nodeId,
            "link_heartbeat_ms": linkHeartbeatMs, "link_retry_max_ms": linkRetryMaxMs,
            "max_queue_wait": maxQueueWait, "auth_timeout": authTimeout, "max_rooms_per_session": maxRoomsPerSession,
            "push_overflow": pushOverflow, "max_queued_bytes": maxQueuedBytes, "frame_timeout": frameTimeout, "max_pending_bytes": maxPendingBytes,
            "max_conns_per_ip": maxConnsPerIp, "conn_rate_per_ip": connRatePerIp, "accept_rate": acceptRate,
            "proxy_protocol": proxyProtocol.map { $0 ? "true" : "false" }, "proxy_timeout": proxyTimeout, "max_buffered_bytes": maxBufferedBytes,
            "allow": allow, "deny": deny, "flood_frames_per_s": floodFramesPerS, "flood_bytes_per_s": floodBytesPerS,
            "admin": admin, "admin_public": adminPublic.map { $0 ? "true" : "false" }, "control_socket": controlSocket,
            "handover": handover, "handover_timeout": handoverTimeout,
            "workers": workers, "ws_origin": wsOrigin.isEmpty ? nil : wsOrigin.joined(separator: ","),
            "ws_any_origin": wsAnyOrigin.map { $0 ? "true" : "false" }, "ws_handshake_timeout": wsHandshakeTimeout,
            "udp_idle_timeout": udpIdleTimeout, "udp_max_datagram": udpMaxDatagram,
            "tls_cert": tlsCert.isEmpty ? nil : tlsCert.joined(separator: ","),
            "tls_key": tlsKey.isEmpty ? nil : tlsKey.joined(separator: ","),
            "tls_client_ca": tlsClientCa, "tls_alpn": tlsAlpn, "tls_ticket_key_file": tlsTicketKeyFile,
            "tls_handshake_timeout": tlsHandshakeTimeout, "tls_max_handshakes": tlsMaxHandshakes,
            "tls_handshake_threads": tlsHandshakeThreads,
            "upstream_ca": upstreamCa, "upstream_cert": upstreamCert, "upstream_key": upstreamKey,
        ]
        return values.compactMapValues { $0 }
    }

    public func run() {
        // A worker's pipe to its master, taken first: a bad setting is reported on it too.
        WorkerReport.adopt()
        let signals = ProcessSignals()
        signals.block()
        let (flags, environment, file) = (flags, ProcessInfo.processInfo.environment, config)
        // A reload reads the same layers again: the file and environment may have changed, flags cannot.
        let reread = { @Sendable () throws(ConfigError) -> Settings in
            try Settings.resolve(flags: flags, environment: environment, configFile: file)
        }
        let settings: Settings
        do {
            settings = try reread()
        } catch {
            failStartup(error.description, code: 2)
        }
        LiveLogLevel.shared.level = settings.logLevel
        switch settings.logFormat {
        case .text: LoggingSystem.bootstrap { LiveLevelLogHandler(wrapped: StreamLogHandler.standardError(label: $0)) }
        case .json: LoggingSystem.bootstrap { LiveLevelLogHandler(wrapped: JSONLogHandler(label: $0)) }
        }
        var logger = Logger(label: "gateway")
        for warning in settings.warnings { logger.warning("\(warning)") }
        let service = ServiceManager(environment: environment, logger: logger)
        guard let (worker, generation) = WorkerSpawner.worker() else {
            if settings.workersAuto { logger.notice("workers auto: \(settings.workers) (\(UsableCores.detect()))") }
            if settings.workers > 1 {
                Master(settings: settings, logger: logger, signals: signals, service: service).run(takeOver: takeOver)
            }
            return GatewayRunner.run(settings, logger: logger, signals: signals, service: service, takeOver: takeOver,
                                     reread: reread)
        }
        // A worker: its master owns the control socket, any hand-over, and the --admin address.
        logger[metadataKey: "worker"] = "\(worker)"
        @Sendable func own(_ settings: Settings) -> Settings {
            var own = settings
            // Its own control socket, where its successor of the same index takes its connections
            // (docs/HANDOVER.md, "With --workers"); the master's path is the master's. Past sun_path's
            // 107 bytes there is none: the worker's clients drain at a restart.
            own.controlSocket = settings.controlSocket.map { "\($0).w\(worker)" }
                .flatMap { $0.utf8.count < 108 ? $0 : nil }
            // Workers run side by side: each its own node to the tiers above.
            own.config.nodeInstance = generation << 8 | UInt32(worker)
            // The master serves --admin for the box and asks each worker's own endpoint, on a loopback port
            // the worker picks and reports (WorkerReport).
            if own.admin != nil {
                own.admin = GatewayConfig.ListenAddress(host: "127.0.0.1", port: 0)
                own.adminPublic = false
            }
            return own
        }
        // A master that took over starts workers that take the connections of their predecessors.
        let predecessor = generation > 0 && settings.handover == .connections ? own(settings).controlSocket : nil
        GatewayRunner.run(own(settings), logger: logger, signals: signals, service: service,
                          takeOver: nil, connectionsFrom: predecessor) { () throws(ConfigError) in
            own(try reread())
        }
    }

    /// ArgumentParser's own `main()` answers a usage error with several lines and
    /// exit code 64; here it is one line and 2, like any other bad setting.
    public static func main() {
        do {
            var command = try parseAsRoot()
            try command.run()
        } catch {
            if exitCode(for: error) == .success { exit(withError: error) }
            failStartup(message(for: error), code: 2)
        }
    }
}
