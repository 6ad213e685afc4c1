/// Everything one client run needs, checked. Built by `Invocation.parse(arguments:)`.
public struct ClientSettings: Sendable, Equatable {
    public var host = "127.0.0.1"
    public var port = 7001
    /// Local addresses connections are made from, in turn; empty: the kernel picks.
    public var sources: [String] = []
    public var mode = ClientMode.load
    public var conns = 32
    public var threads = 2
    public var pipeline = 16
    /// Body bytes per request (the frame is 18 bytes more).
    public var size = 512
    /// Seconds of sending; the run ends by then plus `grace` whatever the server does.
    public var duration = 10.0
    /// Open loop: requests per second in total, on a fixed schedule.
    public var rate: Double?
    /// Total requests (connections in connrate) after which the run ends early.
    public var count: UInt64?
    /// Seconds allowed after `duration` (and for each idle-mode echo round) for replies
    /// still outstanding; one missing after that is reported as a stall.
    public var grace = 3.0
    public var json = false
    /// Where to write the latency distribution (.hgrm text), if anywhere.
    public var hgrm: String?
    /// No progress lines.
    public var quiet = false
    /// Push mode: connection c logs in as uid and room (c % pushUids) + 1; pushes must match the core's.
    public var pushUids = 1
    public var pushScope = PushScope.uid
    public var pushSize = PushFrame.defaultSize
    /// tcp, or ws: each connection opens a WebSocket to `webSocketPath` and sends its requests in
    /// binary messages (docs/WEBSOCKET.md).
    public var transport = ClientTransport.tcp
    public var webSocketPath = "/gw"
    /// TLS to the server; the CA to verify it against (nil: no verification); the SNI name.
    public var tls = false
    public var tlsCA: String?
    public var tlsSNI: String?

    public init() {}

    public static let portRange = 1...65535
    public static let connsRange = 1...100_000
    public static let threadsLimit = 64
    public static let pipelineRange = 1...4096
    public static let inFlightLimit = 4_000_000
    /// A frame must fit the gateway's default max_frame (1 MiB, header included).
    public static let sizeRange = 0...((1 << 20) - 18)
    public static let durationRange = 0.1...86_400.0
    public static let rateRange = 1.0...10_000_000.0
    public static let countRange = 1...1_000_000_000_000
    public static let graceRange = 0.1...600.0

    /// Frame bytes of one request or reply.
    var frameSize: Int { 18 + size }

    /// Requests a connection may have outstanding. In --rate mode --pipeline is only this
    /// safety cap: a send that falls due while the cap is reached waits, and its latency
    /// still counts from its scheduled time.
    var inFlightCap: Int {
        switch mode {
        case .load: pipeline
        case .pingpong, .connrate, .idle, .push: 1
        }
    }
}

extension ClientSettings {
    /// Checks the raw flag values of `bin_test client`.
    init(_ command: ClientCommand) throws(SettingsError) {
        self.init()
        host = try FlagValue.ipv4Host("--host", command.host)
        port = try FlagValue.integer("--port", command.port, in: Self.portRange)
        if let text = command.source {
            sources = try text.split(separator: ",", omittingEmptySubsequences: false).map {
                (item) throws(SettingsError) in try FlagValue.ipv4Host("--source", String(item))
            }
        }
        mode = try FlagValue.choice("--mode", command.mode, as: ClientMode.self)
        conns = try FlagValue.integer("--conns", command.conns ?? (mode == .pingpong ? "1" : "32"), in: Self.connsRange)
        let threadsRange = 1...min(Self.threadsLimit, conns)
        if let text = command.threads {
            guard let value = Int(text), threadsRange.contains(value) else {
                throw SettingsError(flag: "--threads", value: text,
                                    allowed: "an integer in \(threadsRange.lowerBound)...\(threadsRange.upperBound) (at most --conns)")
            }
            threads = value
        } else {
            threads = min(2, conns)
        }
        pipeline = try FlagValue.integer("--pipeline", command.pipeline, in: Self.pipelineRange)
        // Every request in flight keeps an 8-byte send stamp.
        if mode == .load && conns * pipeline > Self.inFlightLimit {
            throw SettingsError(flag: "--pipeline", value: command.pipeline,
                                allowed: "1...\(max(1, Self.inFlightLimit / conns)) with --conns \(conns) (conns × pipeline at most \(Self.inFlightLimit))")
        }
        size = try FlagValue.integer("--size", command.size, in: Self.sizeRange)
        duration = try FlagValue.seconds("--duration", command.duration, in: Self.durationRange)
        grace = try FlagValue.seconds("--grace", command.grace, in: Self.graceRange)
        if let text = command.rate {
            guard mode == .load || mode == .pingpong else {
                throw SettingsError(flag: "--rate", value: text, allowed: "only with --mode load or pingpong")
            }
            guard let value = Double(text), value.isFinite, Self.rateRange.contains(value) else {
                throw SettingsError(flag: "--rate", value: text, allowed: "requests per second in 1...10000000")
            }
            rate = value
        }
        if let text = command.count {
            count = UInt64(try FlagValue.integer("--count", text, in: Self.countRange))
            // Push mode splits --count over the connections: each must be owed one push at least.
            if mode == .push, let count, count < UInt64(conns) {
                throw SettingsError(flag: "--count", value: text, allowed: "at least --conns (\(conns)) in push mode")
            }
        }
        if let path = command.hgrm, path.isEmpty {
            throw SettingsError(flag: "--hgrm", value: path, allowed: "a file path")
        }
        hgrm = command.hgrm
        try pushFlags(command)
        transport = try FlagValue.choice("--transport", command.transport, as: ClientTransport.self)
        guard command.wsPath.hasPrefix("/"), !command.wsPath.contains(where: { $0 == " " || $0 == "\r" || $0 == "\n" })
        else { throw SettingsError(flag: "--ws-path", value: command.wsPath, allowed: "a URL path starting with /") }
        webSocketPath = command.wsPath
        tls = command.tls
        for (flag, value) in [("--tls-ca", command.tlsCa), ("--tls-sni", command.tlsSni)] where value != nil {
            guard tls else { throw SettingsError(flag: flag, value: value!, allowed: "only with --tls") }
            guard !value!.isEmpty else { throw SettingsError(flag: flag, value: "", allowed: "a file path or name") }
        }
        tlsCA = command.tlsCa
        tlsSNI = command.tlsSni
        json = command.json
        quiet = command.quiet
    }

    private mutating func pushFlags(_ command: ClientCommand) throws(SettingsError) {
        let given = [("--push-uids", command.pushUids), ("--push-scope", command.pushScope),
                     ("--push-size", command.pushSize)]
        if mode != .push, let (flag, value) = given.first(where: { $0.1 != nil }) {
            throw SettingsError(flag: flag, value: value!, allowed: "only with --mode push")
        }
        pushUids = try FlagValue.integer("--push-uids", command.pushUids ?? "1", in: 1...1_000_000_000)
        pushScope = try FlagValue.choice("--push-scope", command.pushScope ?? "uid", as: PushScope.self)
        pushSize = try FlagValue.integer("--push-size", command.pushSize ?? "\(PushFrame.defaultSize)",
                                         in: PushFrame.sizeRange)
    }
}
