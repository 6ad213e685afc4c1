import Configuration
import GatewayAdmin
import GatewayCore
import Logging

extension Settings {
    /// Merges defaults < YAML file < environment (GATEWAY_<KEY>) < flags and
    /// validates the result. Pure apart from reading `configFile`.
    ///
    /// - Parameters:
    ///   - flags: flag values by configuration key (`max_connections`, not `--max-connections`).
    ///   - environment: the process environment; only GATEWAY_ variables matter.
    ///   - configFile: path of a YAML file whose top-level keys are configuration keys.
    /// - Throws: the first bad value, naming its key and what it allows.
    public static func resolve(
        flags: [String: String],
        environment: [String: String],
        configFile: String?
    ) throws(ConfigError) -> Settings {
        var settings = Settings()
        // Highest precedence first: ConfigReader answers from the first provider that has the key.
        var providers: [any ConfigProvider] = [
            InMemoryProvider(name: "flags", values: Dictionary(uniqueKeysWithValues: flags.map {
                (AbsoluteConfigKey([$0.key]), ConfigValue(.string($0.value), isSecret: false))
            })),
            // "gateway" + "max_connections" is looked up as GATEWAY_MAX_CONNECTIONS.
            EnvironmentVariablesProvider(environmentVariables: environment).prefixKeys(with: "gateway"),
        ]
        if let configFile {
            let file = try ConfigFile(path: configFile)
            providers.append(file.provider)
            settings.warnings = file.topLevelKeys.filter { !keys.contains($0) }
                .map { "unknown key '\($0)' in \(configFile) ignored; see --help for the keys" }
        }
        let reader = ConfigReader(providers: providers)
        func text(_ key: String) -> String? { reader.string(forKey: ConfigKey([key])) }

        if let host = text("host") { settings.config.host = try SettingParsers.host(host) }
        if let poller = text("poller") { settings.config.poller = try PollerKind(parsing: poller) }
        if let role = text("role") { settings.config.role = try GatewayRole(parsing: role) }
        if let policy = text("push_overflow") { settings.config.pushOverflow = try PushOverflow(parsing: policy) }
        for entry in GatewayConfig.ranges {
            if let value = text(entry.key) {
                settings.config[keyPath: entry.path] = try SettingParsers.int(value, key: entry.key, range: entry.range)
            }
        }
        if let upstream = text("upstream") {
            settings.config.upstream = try SettingParsers.upstream([upstream])
        } else if let list = reader.stringArray(forKey: ConfigKey(["upstream"])) {
            settings.config.upstream = try SettingParsers.upstream(list)
        }
        for key in ["allow", "deny"] {
            let list: [CIDR]
            if let value = text(key) {
                list = try SettingParsers.cidrs([value], key: key)
            } else if let items = reader.stringArray(forKey: ConfigKey([key])) {
                list = try SettingParsers.cidrs(items, key: key)
            } else {
                continue
            }
            if key == "allow" { settings.config.allow = list } else { settings.config.deny = list }
        }
        if let listen = text("listen") {
            settings.config.listen = try SettingParsers.listen([listen])
        } else if let items = reader.stringArray(forKey: ConfigKey(["listen"])) {
            settings.config.listen = try SettingParsers.listen(items)
        }
        if let origins = text("ws_origin") {
            settings.config.webSocketOrigins = try SettingParsers.origins([origins])
        } else if let items = reader.stringArray(forKey: ConfigKey(["ws_origin"])) {
            settings.config.webSocketOrigins = try SettingParsers.origins(items)
        }
        if let any = text("ws_any_origin") {
            settings.config.webSocketAnyOrigin = try SettingParsers.bool(any, key: "ws_any_origin")
        }
        try resolveTLS(&settings, text: text, list: { key in reader.stringArray(forKey: ConfigKey([key])) })
        if let proxy = text("proxy_protocol") {
            settings.config.proxyProtocol = try SettingParsers.bool(proxy, key: "proxy_protocol")
        }
        if let node = text("node_id") {
            settings.config.nodeID = UInt32(try SettingParsers.int(node, key: "node_id", range: 0...Int(UInt32.max)))
        }
        if let interval = text("stats_interval") {
            settings.statsInterval = try SettingParsers.int(interval, key: "stats_interval", range: statsIntervalRange)
        }
        if let level = text("log_level") { settings.logLevel = try Logger.Level(parsing: level) }
        if let format = text("log_format") { settings.logFormat = try LogFormat(parsing: format) }
        if let admin = text("admin") {
            let addresses = try SettingParsers.listen([admin], key: "admin")
            guard addresses.count == 1, addresses[0].webSocketPath == nil else {
                throw ConfigError(key: "admin", value: admin, allowed: "one ADDR:PORT, e.g. 127.0.0.1:9900")
            }
            settings.admin = addresses[0]
        }
        if let open = text("admin_public") { settings.adminPublic = try SettingParsers.bool(open, key: "admin_public") }
        if let admin = settings.admin {
            do throws(AdminAddressError) {
                try AdminServer.validate(host: admin.host, port: admin.port, allowPublic: settings.adminPublic)
            } catch {
                throw ConfigError(key: error.key, value: error.value, allowed: error.allowed)
            }
        }
        if let path = text("control_socket") {
            guard !path.isEmpty, path.utf8.count < 108 else {
                throw ConfigError(key: "control_socket", value: path, allowed: "a file path of 1...107 bytes")
            }
            settings.controlSocket = path
        }
        if let mode = text("handover") { settings.handover = try HandoverMode(parsing: mode) }
        if let seconds = text("handover_timeout") {
            settings.handoverTimeout = try SettingParsers.int(seconds, key: "handover_timeout", range: handoverTimeoutRange)
        }
        if let count = text("workers") {
            if count.trimmingWhitespace == "auto" {
                settings.workers = min(UsableCores.detect().count, workersRange.upperBound)
                settings.workersAuto = true
            } else {
                do {
                    settings.workers = try SettingParsers.int(count, key: "workers", range: workersRange)
                } catch {
                    throw ConfigError(key: "workers", value: count, allowed: "\(error.allowed) or auto")
                }
            }
        }
        try settings.config.validate()
        // The certificate files are read now, so that a bad one stops start-up (or a reload) by name.
        try Gateway.checkTLS(settings.config)
        return settings
    }

    /// tls_cert and tls_key (pairs, in order), tls_client_ca, tls_alpn and the links' upstream_ca,
    /// upstream_cert, upstream_key: text (comma-separated) or YAML lists.
    private static func resolveTLS(_ settings: inout Settings, text: (String) -> String?,
                                   list: (String) -> [String]?) throws(ConfigError) {
        func items(_ key: String) -> [String] {
            let raw = text(key).map { [$0] } ?? list(key) ?? []
            return raw.flatMap { $0.split(separator: ",") }.map { String($0).trimmingWhitespace }.filter { !$0.isEmpty }
        }
        let certificates = items("tls_cert"), keys = items("tls_key")
        guard certificates.count == keys.count else {
            throw ConfigError(key: "tls_key", value: "\(keys.count) keys for \(certificates.count) certificates",
                              allowed: "one --tls-key per --tls-cert, in the same order")
        }
        settings.config.tls.pairs = zip(certificates, keys).map { TLSSettings.Pair(certificate: $0, key: $1) }
        settings.config.tls.alpn = items("tls_alpn")
        if let long = settings.config.tls.alpn.first(where: { $0.utf8.count > 255 }) {
            throw ConfigError(key: "tls_alpn", value: long, allowed: "protocol names of 1...255 bytes")
        }
        for (key, path) in [("tls_client_ca", \GatewayConfig.tls.clientCA), ("tls_ticket_key_file", \.tls.ticketKeyFile),
                            ("upstream_ca", \.upstreamCA),
                            ("upstream_cert", \.upstreamCert), ("upstream_key", \.upstreamKey)] {
            guard let value = text(key) else { continue }
            guard !value.trimmingWhitespace.isEmpty else {
                throw ConfigError(key: key, value: value, allowed: key == "tls_ticket_key_file" ? "a file" : "a PEM file")
            }
            settings.config[keyPath: path] = value.trimmingWhitespace
        }
    }
}
