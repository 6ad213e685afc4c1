import GatewayCore
import Logging

/// `--handover`: a hot restart moves the live connections with their state, or asks them to reconnect.
public enum HandoverMode: String, CaseIterable, Sendable, NamedSetting {
    case connections, drain
    public static var settingKey: String { "handover" }
}

/// Everything the `gateway` command runs with: the engine's configuration plus
/// what only the front end uses.
public struct Settings: Sendable, Equatable {
    public var config = GatewayConfig()
    /// Seconds between stats lines; 0 disables them.
    public var statsInterval = 10
    public var logLevel = Logger.Level.info
    public var logFormat = LogFormat.text
    /// The admin endpoint's address (docs/ADMIN.md); nil: none. Loopback unless `adminPublic`.
    public var admin: GatewayConfig.ListenAddress?
    public var adminPublic = false
    /// Where a new process started with --take-over asks for the listeners (hot restart); nil: none.
    public var controlSocket: String?
    /// What a process started with --take-over takes besides the listeners (docs/HANDOVER.md).
    public var handover = HandoverMode.connections
    /// Seconds a hand-over of connections may take, as the old process bounds it; then the rest drain.
    public var handoverTimeout = 30
    /// Worker processes, each a whole engine, on the listeners a master process binds; 1: no master.
    public var workers = 1
    /// `workers` was `auto`: one per usable core (UsableCores).
    public var workersAuto = false
    /// Problems worth a warning that do not stop start-up (unknown keys in the file).
    public var warnings: [String] = []

    public init() {}

    static let statsIntervalRange = 0...86_400
    static let workersRange = 1...256
    static let handoverTimeoutRange = 1...3600

    /// Every key a config file, the environment or a flag may set.
    static let keys = ["host", "poller", "role", "push_overflow", "upstream", "allow", "deny", "proxy_protocol", "listen", "log_format", "node_id", "stats_interval", "log_level", "admin", "admin_public", "control_socket", "handover", "handover_timeout", "workers", "ws_origin", "ws_any_origin", "tls_cert", "tls_key", "tls_client_ca", "tls_alpn", "tls_ticket_key_file", "upstream_ca", "upstream_cert", "upstream_key"]
        + GatewayConfig.ranges.map(\.key)

    /// The environment variable that sets `key`, e.g. GATEWAY_MAX_CONNECTIONS.
    public static func environmentName(of key: String) -> String {
        "GATEWAY_" + key.uppercased()
    }

    /// The settings as `key=value` pairs, for the start-up log line.
    var summary: String {
        let numeric = GatewayConfig.ranges.filter { $0.key != "port" }
            .map { "\($0.key)=\(config[keyPath: $0.path])" }
        let upstream = config.upstream.isEmpty ? "none" : config.upstream.map(\.description).joined(separator: ",")
        let named = ["poller=\(config.poller)", "role=\(config.role)", "push_overflow=\(config.pushOverflow)",
                     "upstream=\(upstream)"]
        return (named + numeric + ["stats_interval=\(statsInterval)", "log_level=\(logLevel)"])
            .joined(separator: " ")
    }
}
