import GatewayCLI
import GatewayCore
import Logging
import Testing

@Suite struct ConfigFileTests {
    @Test func everyKeyIsRead() throws {
        let file = try TemporaryFile("""
            # comments and blank lines are fine

            host: 0.0.0.0
            port: 7010
            poller: poll
            max_connections: 1000
            max_frame: 4096
            idle_timeout: 0
            write_stall_timeout: 7
            ring_capacity: 64
            tick_ms: 10
            spin_us: 0
            inline_bytes: 4096
            backlog: 128
            drain_timeout: 2
            stats_interval: 0
            log_level: trace
            """)
        defer { file.remove() }
        let settings = try Settings.resolve(flags: [:], environment: [:], configFile: file.path)
        var expected = GatewayConfig()
        expected.host = "0.0.0.0"
        expected.port = 7010
        expected.poller = .poll
        expected.maxConnections = 1000
        expected.maxFrame = 4096
        expected.idleTimeout = 0
        expected.writeStallTimeout = 7
        expected.ringCapacity = 64
        expected.tickMilliseconds = 10
        expected.spinMicroseconds = 0
        expected.inlineBytes = 4096
        expected.backlog = 128
        expected.drainTimeout = 2
        #expect(settings.config == expected)
        #expect(settings.statsInterval == 0)
        #expect(settings.logLevel == .trace)
        #expect(settings.warnings.isEmpty)
    }

    @Test func quotedValuesAreRead() throws {
        let file = try TemporaryFile("port: \"7011\"\npoller: 'poll'\n")
        defer { file.remove() }
        let settings = try Settings.resolve(flags: [:], environment: [:], configFile: file.path)
        #expect(settings.config.port == 7011)
        #expect(settings.config.poller == .poll)
    }

    @Test func unknownKeysAreWarningsNotErrors() throws {
        let file = try TemporaryFile("port: 7012\nmax_conections: 5\nnested:\n  port: 1\n")
        defer { file.remove() }
        let settings = try Settings.resolve(flags: [:], environment: [:], configFile: file.path)
        #expect(settings.config.port == 7012)
        #expect(settings.config.maxConnections == GatewayConfig().maxConnections)
        #expect(settings.warnings.count == 2)
        #expect(settings.warnings.first?.contains("'max_conections'") == true)
        #expect(settings.warnings.last?.contains("'nested'") == true)
    }

    @Test func commentedOutTemplateIsEmpty() throws {
        let file = try TemporaryFile("# port: 7013\n\n  # max_connections: 5\n")
        defer { file.remove() }
        let settings = try Settings.resolve(flags: [:], environment: [:], configFile: file.path)
        #expect(settings.config == GatewayConfig())
    }

    @Test func missingFileIsAConfigError() {
        let path = "/nonexistent/gateway.yaml"
        #expect {
            try Settings.resolve(flags: [:], environment: [:], configFile: path)
        } throws: { error in
            let error = error as? ConfigError
            return error?.key == "config" && error?.value == path
                && error?.allowed.contains("No such file or directory") == true
        }
    }

    @Test(arguments: ["port: [1, 2\n", "- port\n- 7000\n", "port: 1\n  bad indent: 2\n"])
    func unparsableFileIsAConfigError(contents: String) throws {
        let file = try TemporaryFile(contents)
        defer { file.remove() }
        #expect {
            try Settings.resolve(flags: [:], environment: [:], configFile: file.path)
        } throws: { error in
            (error as? ConfigError)?.key == "config"
        }
    }
}
