import ArgumentParser
import GatewayCore

/// `bin_test core`: the flags as typed; `CoreSettings.init(_:)` checks them.
struct CoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "core",
        abstract: "Run an echo core server (docs/LINK.md) until SIGINT or SIGTERM.",
        discussion: """
            Accepts links from access and aggregation gateways, answers every DATA with the identical \
            frame, and prints opened=N closed=M data=K when stopped. For tests: --delay-us sleeps before \
            each answer; --fail-every N answers every Nth frame with status 500 and an empty body.
            """
    )

    @Option(help: "Address to listen on (IPv4).")
    var host = "127.0.0.1"
    @Option(help: "Port to listen on (0...65535).")
    var port = "7100"
    @Option(help: "epoll | poll.")
    var poller = "epoll"
    @Option(help: "Node id announced in HELLO (0...4294967295).")
    var nodeId = "1"
    @Option(help: "Microseconds to sleep before each answer (0...1000000).")
    var delayUs = "0"
    @Option(help: "Answer every Nth DATA with status 500 (0 = never; 0...1000000000).")
    var failEvery = "0"
}

/// What `bin_test core` runs with.
public struct CoreSettings: Sendable, Equatable {
    public var host = "127.0.0.1"
    public var port = 7100
    public var poller = PollerKind.epoll
    public var nodeID: UInt32 = 1
    public var delayMicroseconds = 0
    public var failEvery = 0

    public init() {}
}

extension CoreSettings {
    init(_ command: CoreCommand) throws(SettingsError) {
        self.init()
        (host, port, poller) = try ServerSettings.listen(host: command.host, port: command.port, poller: command.poller)
        nodeID = UInt32(try FlagValue.integer("--node-id", command.nodeId, in: 0...Int(UInt32.max)))
        delayMicroseconds = try FlagValue.integer("--delay-us", command.delayUs, in: 0...1_000_000)
        failEvery = try FlagValue.integer("--fail-every", command.failEvery, in: 0...1_000_000_000)
    }
}
