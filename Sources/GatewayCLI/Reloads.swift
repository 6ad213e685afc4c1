import GatewayAdmin
import GatewayCore
import Logging
import Synchronization

/// SIGHUP and POST /reload: re-reads the settings as at start (file, environment, flags) and applies
/// the keys that can change while running; the others are reported as needing a restart and keep
/// their running value. A bad file changes nothing and is logged with its key and what it allows.
final class Reloads: Sendable {
    /// The keys applied live: the engine's (Gateway.liveKeys) and the front end's.
    static let liveKeys = Set(Gateway.liveKeys + ["log_level", "stats_interval", "tls_cert", "tls_key", "tls_client_ca",
                                                  "tls_alpn", "tls_ticket_key_file", "upstream_ca", "upstream_cert", "upstream_key"])

    private let gateway: Gateway
    private let logger: Logger
    private let reread: @Sendable () throws(ConfigError) -> Settings
    private let running: Mutex<Settings>

    init(gateway: Gateway, settings: Settings, logger: Logger,
         reread: @escaping @Sendable () throws(ConfigError) -> Settings) {
        self.gateway = gateway
        self.logger = logger
        self.reread = reread
        running = Mutex(settings)
    }

    /// The settings in force.
    var settings: Settings { running.withLock { $0 } }

    func reload() -> ReloadOutcome {
        running.withLock { current -> ReloadOutcome in
            let new: Settings
            do throws(ConfigError) {
                new = try reread()
            } catch {
                logger.error("reload refused, every setting kept: \(error)")
                return .rejected(error.description)
            }
            let old = current.values, now = new.values
            let changed = now.keys.filter { old[$0] != now[$0] }.sorted()
            // Forwarding cannot start or end while running: only a change of servers applies live.
            let switches = current.config.upstream.isEmpty != new.config.upstream.isEmpty
            let isLive = { (key: String) in Self.liveKeys.contains(key) && !(key == "upstream" && switches) }
            let live = changed.filter(isLive)
            let restart = changed.filter { !isLive($0) }
            var next = current
            next.takeLive(from: new)
            do throws(ConfigError) {
                try gateway.reconfigure(next.config)
            } catch {
                logger.error("reload refused, every setting kept: \(error)")
                return .rejected(error.description)
            }
            LiveLogLevel.shared.level = next.logLevel
            current = next
            for warning in new.warnings { logger.warning("\(warning)") }
            let applied = live.map { "\($0)=\(now[$0]!)" }.joined(separator: " ")
            logger.notice("reloaded: \(live.isEmpty ? "nothing changed live" : applied)")
            if !restart.isEmpty {
                logger.warning("reload: \(restart.joined(separator: ", ")) changed but need a restart; running values kept")
            }
            return .applied(changed: live, needRestart: restart)
        }
    }
}

extension Settings {
    /// Every key's value as text, to tell what a reload changed.
    var values: [String: String] {
        var values: [String: String] = [:]
        for entry in GatewayConfig.ranges { values[entry.key] = "\(config[keyPath: entry.path])" }
        values["host"] = config.host
        values["listen"] = config.listenAddresses.map(\.description).joined(separator: ",")
        values["poller"] = "\(config.poller)"
        values["role"] = "\(config.role)"
        values["push_overflow"] = "\(config.pushOverflow)"
        values["upstream"] = config.upstream.map(\.description).joined(separator: ",")
        values["allow"] = config.allow.map(\.description).joined(separator: ",")
        values["deny"] = config.deny.map(\.description).joined(separator: ",")
        values["proxy_protocol"] = "\(config.proxyProtocol)"
        values["node_id"] = config.nodeID.map(String.init) ?? "derived"
        values["stats_interval"] = "\(statsInterval)"
        values["log_level"] = "\(logLevel)"
        values["log_format"] = "\(logFormat)"
        values["admin"] = admin?.description ?? "none"
        values["admin_public"] = "\(adminPublic)"
        values["control_socket"] = controlSocket ?? "none"
        values["handover"] = handover.rawValue
        values["handover_timeout"] = "\(handoverTimeout)"
        values["workers"] = "\(workers)"
        values["tls_cert"] = config.tls.pairs.map(\.certificate).joined(separator: ",")
        values["tls_key"] = config.tls.pairs.map(\.key).joined(separator: ",")
        values["tls_client_ca"] = config.tls.clientCA ?? "none"
        values["tls_alpn"] = config.tls.alpn.joined(separator: ",")
        values["tls_ticket_key_file"] = config.tls.ticketKeyFile ?? "none"
        values["upstream_ca"] = config.upstreamCA ?? "system store"
        values["upstream_cert"] = config.upstreamCert ?? "none"
        values["upstream_key"] = config.upstreamKey ?? "none"
        values["ws_origin"] = config.webSocketOrigins.isEmpty ? "none" : config.webSocketOrigins.joined(separator: ",")
        values["ws_any_origin"] = "\(config.webSocketAnyOrigin)"
        return values
    }

    /// These settings with the live keys of `new`.
    mutating func takeLive(from new: Settings) {
        for entry in GatewayConfig.ranges where Reloads.liveKeys.contains(entry.key) {
            config[keyPath: entry.path] = new.config[keyPath: entry.path]
        }
        config.allow = new.config.allow
        config.deny = new.config.deny
        config.pushOverflow = new.config.pushOverflow
        // Certificate files are read again on every reload, changed or not (rotation in place).
        config.tls = new.config.tls
        (config.upstreamCA, config.upstreamCert, config.upstreamKey) =
            (new.config.upstreamCA, new.config.upstreamCert, new.config.upstreamKey)
        if config.upstream.isEmpty == new.config.upstream.isEmpty { config.upstream = new.config.upstream }
        statsInterval = new.statsInterval
        logLevel = new.logLevel
    }
}
