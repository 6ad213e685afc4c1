import ArgumentParser
import GatewayCore

/// `bin_test core`: the flags as typed; `CoreSettings.init(_:)` checks them.
struct CoreCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "core",
        abstract: "Run an echo core server (docs/LINK.md) until SIGINT or SIGTERM.",
        discussion: """
            Accepts links from access and aggregation gateways, answers every DATA with the identical \
            frame, and prints opened=N closed=M data=K pushes=P moving=A moved=B moved_unknown=U \
            moves_lost=L when stopped (MOVE: sessions an access node moved to its successor at a hot restart, \
            docs/HANDOVER.md). For tests: --delay-us delays each answer, and MOVING's answer after them (a \
            timer: heartbeats are still answered at once); --fail-every N answers every Nth frame with \
            status 500 and an empty body.

            A frame of cmd 10 (LOGIN, body: uid u32, optionally room u32, big-endian) binds its session \
            to the uid and joins the room, then is echoed. With --push-rate R the core pushes R frames a \
            second, from --push-after seconds after it starts (or after --push-after-logins logins), \
            to uids (or rooms) 1...--push-uids in turn or to every session: cmd 99, seq = push number, \
            uid = target, body = send time (CLOCK_MONOTONIC ns, u64), target (u32), scope (u8: 1 uid, \
            2 room, 4 all), then byte i = \
            UInt8(seq * 31 + i) up to --push-size bytes (what `bin_test client --mode push` checks).
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
    @Option(help: "Pushes per second (0 = none; 0...10000000).")
    var pushRate = "0"
    @Option(help: "uid | room | all.")
    var pushScope = "uid"
    @Option(help: "Push targets cycle over uids (or rooms) 1...N (1...1000000000).")
    var pushUids = "1"
    @Option(help: "Body bytes of each push (24...1048558).")
    var pushSize = "\(PushFrame.defaultSize)"
    @Option(help: "Seconds from the start to the first push (0...3600).")
    var pushAfter = "0"
    @Option(help: "Stop pushing after this many pushes (0 = never; 0...1000000000000).")
    var pushCount = "0"
    @Option(help: """
        Wait for this many logins, bound here and reported bound by the access nodes (PRESENCE), before \
        --push-after starts counting (0 = none; 0...1000000000).
        """)
    var pushAfterLogins = "0"
}

/// What `bin_test core` runs with.
public struct CoreSettings: Sendable, Equatable {
    public var host = "127.0.0.1"
    public var port = 7100
    public var poller = PollerKind.epoll
    public var nodeID: UInt32 = 1
    public var delayMicroseconds = 0
    public var failEvery = 0
    public var push = PushSettings()
    /// How long a session answered MOVING may wait for MOVED (no flag: tests shorten it).
    public var moveTimeoutMilliseconds: UInt64 = 30_000

    public init() {}
}

extension CoreSettings {
    init(_ command: CoreCommand) throws(SettingsError) {
        self.init()
        (host, port, poller) = try ServerSettings.listen(host: command.host, port: command.port,
                                                         poller: command.poller)
        nodeID = UInt32(try FlagValue.integer("--node-id", command.nodeId, in: 0...Int(UInt32.max)))
        delayMicroseconds = try FlagValue.integer("--delay-us", command.delayUs, in: 0...1_000_000)
        failEvery = try FlagValue.integer("--fail-every", command.failEvery, in: 0...1_000_000_000)
        push.rate = try FlagValue.integer("--push-rate", command.pushRate, in: 0...10_000_000)
        push.scope = try FlagValue.choice("--push-scope", command.pushScope, as: PushScope.self)
        push.uids = try FlagValue.integer("--push-uids", command.pushUids, in: 1...1_000_000_000)
        push.size = try FlagValue.integer("--push-size", command.pushSize, in: PushFrame.sizeRange)
        push.after = try FlagValue.seconds("--push-after", command.pushAfter, in: 0...3600)
        push.count = try FlagValue.integer("--push-count", command.pushCount, in: 0...1_000_000_000_000)
        push.afterLogins = try FlagValue.integer("--push-after-logins", command.pushAfterLogins, in: 0...1_000_000_000)
    }
}
