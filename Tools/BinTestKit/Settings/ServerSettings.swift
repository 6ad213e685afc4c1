import GatewayCore

/// What `bin_test server` runs the engine with.
public struct ServerSettings: Sendable, Equatable {
    public var host = "127.0.0.1"
    /// 0 picks an ephemeral port, which is printed at start.
    public var port = 7001
    public var poller = PollerKind.epoll

    public init() {}

    public static let portRange = 0...65535

    /// The engine's configuration: its defaults, with the address and poller from the flags.
    public var config: GatewayConfig {
        var config = GatewayConfig()
        config.host = host
        config.port = port
        config.poller = poller
        return config
    }
}

extension ServerSettings {
    init(_ command: ServerCommand) throws(SettingsError) {
        self.init()
        (host, port, poller) = try Self.listen(host: command.host, port: command.port, poller: command.poller)
    }

    /// --host, --port and --poller as every server mode (server, core) takes them.
    static func listen(host: String, port: String, poller: String) throws(SettingsError) -> (String, Int, PollerKind) {
        (try FlagValue.ipv4Host("--host", host), try FlagValue.integer("--port", port, in: portRange),
         try FlagValue.choice("--poller", poller, as: PollerKind.self))
    }
}
