import GatewayCore

extension GatewayConfig {
    /// A validated configuration from just an address and a poller name, every
    /// other setting at its default: what bin_test's server mode needs.
    public static func validated(host: String, port: Int, poller: String) throws(ConfigError) -> GatewayConfig {
        var config = GatewayConfig()
        config.host = try SettingParsers.host(host)
        config.port = port
        config.poller = try PollerKind(parsing: poller)
        try config.validate()
        return config
    }
}
