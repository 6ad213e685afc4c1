import Foundation
import GatewayCore
import Logging
import Testing

@testable import GatewayCLI

/// A reload re-reads the file: a live key takes effect on the running gateway, a key that needs a
/// restart is reported and kept, and a bad file changes nothing.
@Suite(.serialized) struct ReloadTests {
    /// A running echo gateway and the Reloads over it, reading `file`.
    private static func start(_ file: TemporaryFile) throws -> (Gateway, Reloads) {
        let path = file.path
        let reread = { @Sendable () throws(ConfigError) -> Settings in
            try Settings.resolve(flags: ["port": "0"], environment: [:], configFile: path)
        }
        let settings = try reread()
        let gateway = try Gateway(config: settings.config, logger: Logger(label: "reload-test"))
        try gateway.start()
        return (gateway, Reloads(gateway: gateway, settings: settings, logger: Logger(label: "reload-test"),
                                 reread: reread))
    }

    @Test(.timeLimit(.minutes(1)))
    func liveKeyTakesEffectAndBadFileChangesNothing() throws {
        let file = try TemporaryFile("max_conns_per_ip: 0\nstats_interval: 10\n")
        defer { file.remove() }
        let (gateway, reloads) = try Self.start(file)
        defer { gateway.stop() }
        let first = try EchoSocket(port: gateway.port), second = try EchoSocket(port: gateway.port)
        #expect(try first.echo(1) && second.echo(2))

        try "max_conns_per_ip: 2\nstats_interval: 3\n".write(toFile: file.path, atomically: true, encoding: .utf8)
        #expect(reloads.reload() == .applied(changed: ["max_conns_per_ip", "stats_interval"], needRestart: []))
        #expect(reloads.settings.statsInterval == 3)
        // Two are open from 127.0.0.1: a third is refused at accept, the two go on.
        let third = try EchoSocket(port: gateway.port)
        #expect(try !third.echo(3))
        #expect(try waitFor { gateway.stats().closes(.perAddress) == 1 })
        #expect(try first.echo(4) && second.echo(5))

        // A bad value: refused, naming the key; the limit of 2 still holds.
        try "max_conns_per_ip: -1\n".write(toFile: file.path, atomically: true, encoding: .utf8)
        guard case .rejected(let why) = reloads.reload() else { Issue.record("bad file applied"); return }
        #expect(why.contains("max_conns_per_ip"))
        #expect(reloads.settings.config.maxConnsPerIP == 2)
        #expect(try !EchoSocket(port: gateway.port).echo(6))
        #expect(try waitFor { gateway.stats().closes(.perAddress) == 2 })

        // A file that cannot be parsed changes nothing either.
        try "max_conns_per_ip: [1\n".write(toFile: file.path, atomically: true, encoding: .utf8)
        guard case .rejected = reloads.reload() else { Issue.record("unparsable file applied"); return }
        #expect(reloads.settings.config.maxConnsPerIP == 2)

        // Back to no limit, with a key that needs a restart: reported, and its running value kept.
        try "max_conns_per_ip: 0\nmax_connections: 5000\n".write(toFile: file.path, atomically: true,
                                                                   encoding: .utf8)
        #expect(reloads.reload() == .applied(changed: ["max_conns_per_ip", "stats_interval"],
                                             needRestart: ["max_connections"]))
        #expect(reloads.settings.config.maxConnections == GatewayConfig().maxConnections)
        #expect(try EchoSocket(port: gateway.port).echo(7))
    }

    @Test(.timeLimit(.minutes(1)))
    func denyListAndLogLevelApplyLive() throws {
        let file = try TemporaryFile("log_level: info\n")
        defer { file.remove() }
        let (gateway, reloads) = try Self.start(file)
        defer { gateway.stop() }
        let before = LiveLogLevel.shared.level
        defer { LiveLogLevel.shared.level = before }
        #expect(try EchoSocket(port: gateway.port).echo(1))
        try "log_level: debug\ndeny: 127.0.0.0/8\n".write(toFile: file.path, atomically: true, encoding: .utf8)
        #expect(reloads.reload() == .applied(changed: ["deny", "log_level"], needRestart: []))
        #expect(LiveLogLevel.shared.level == .debug)
        #expect(try !EchoSocket(port: gateway.port).echo(2))
        #expect(try waitFor { gateway.stats().closes(.denied) == 1 })
    }

    private func waitFor(_ condition: () -> Bool) throws -> Bool {
        for _ in 0..<500 {
            if condition() { return true }
            usleep(10_000)
        }
        return condition()
    }
}
