import ArgumentParser
import Glibc

/// `bin_test restart-probe`: the flags as typed; `RestartProbeSettings.init(_:)` checks them.
struct RestartProbeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "restart-probe",
        abstract: "Keep clients busy on a gateway through a hot restart and count what they saw.",
        discussion: """
        --connections long-lived connections each keep one request outstanding (frames as in \
        `bin_test client`: cmd 1, uid = connection index, seq increasing, body byte i = \
        UInt8(seq * 31 + i)), and check every echo byte for byte. One that receives PLEASE_RECONNECT \
        (cmd 0xFF02) stops sending, reads the reply it is owed, closes and connects again to the same \
        address. Meanwhile --rate short connections a second each connect, send one frame, read its \
        echo and close. After --duration seconds nothing new starts; what is in progress gets --grace \
        seconds more, and a request still unanswered then is lost.

        A connect or a reply that takes longer than --timeout seconds is a timeout; a long-lived \
        connection that fails is connected again (every 100 ms while it fails). "N connections open" \
        goes to stderr once every long-lived connection is first open. Prints one JSON object on \
        stdout and exits 0 whatever the figures (2 on bad flags).
        """
    )

    @Option(help: "Server IPv4 address.")
    var host = "127.0.0.1"
    @Option(help: "Server port (1...65535).")
    var port = "7001"
    @Option(help: "Long-lived connections (1...10000).")
    var connections = "1000"
    @Option(help: "New short connections per second (0...5000).")
    var rate = "200"
    @Option(help: "Seconds of sending (0.1...3600).")
    var duration = "10"
    @Option(help: "Body bytes per request (0...1048558).")
    var size = "64"
    @Option(help: "Seconds after --duration for replies and connects still in progress (0.1...60).")
    var grace = "3"
    @Option(help: "Seconds a connect or a reply may take (0.1...30).")
    var timeout = "5"

    /// Invocation has no case of its own for this mode: it runs from here, prints, and exits.
    mutating func run() throws {
        let settings = try RestartProbeSettings(self)
        FileLimit.raise(toAtLeast: settings.connections + settings.shortSlots + 64)
        let counts = RestartProbe(settings: settings).run()
        print(counts.json(settings))
        Glibc.exit(0)
    }
}

/// What one restart-probe run needs, checked.
struct RestartProbeSettings {
    var host: String
    var port: Int
    var connections: Int
    var rate: Double
    var duration: Double
    var size: Int
    var grace: Double
    var timeout: Double

    /// Short connections that may be in progress at once: each lives at most --timeout seconds and
    /// the 0.1 s until the next look for timeouts.
    var shortSlots: Int { rate == 0 ? 0 : Int((rate * (timeout + 0.2)).rounded(.up)) + 16 }

    init(_ command: RestartProbeCommand) throws(SettingsError) {
        host = try FlagValue.ipv4Host("--host", command.host)
        port = try FlagValue.integer("--port", command.port, in: ClientSettings.portRange)
        connections = try FlagValue.integer("--connections", command.connections, in: 1...10_000)
        guard let rate = Double(command.rate), rate.isFinite, (0...5000).contains(rate) else {
            throw SettingsError(flag: "--rate", value: command.rate, allowed: "connections per second in 0...5000")
        }
        self.rate = rate
        duration = try FlagValue.seconds("--duration", command.duration, in: 0.1...3600)
        size = try FlagValue.integer("--size", command.size, in: ClientSettings.sizeRange)
        grace = try FlagValue.seconds("--grace", command.grace, in: 0.1...60)
        timeout = try FlagValue.seconds("--timeout", command.timeout, in: 0.1...30)
    }
}
