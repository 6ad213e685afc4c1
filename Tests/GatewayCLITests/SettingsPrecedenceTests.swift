import GatewayCLI
import GatewayCore
import Logging
import Testing

@Suite struct SettingsPrecedenceTests {
    @Test func defaultsWhenNothingIsSet() throws {
        let settings = try Settings.resolve(flags: [:], environment: ["PATH": "/bin"], configFile: nil)
        #expect(settings.config == GatewayConfig())
        #expect(settings.statsInterval == 10)
        #expect(settings.logLevel == .info)
        #expect(settings.warnings.isEmpty)
    }

    @Test func eachLayerOverridesTheOneBelow() throws {
        let file = try TemporaryFile("""
            port: 7100
            poller: poll
            max_connections: 10
            idle_timeout: 60
            log_level: debug
            """)
        defer { file.remove() }
        let environment = ["GATEWAY_POLLER": "epoll", "GATEWAY_MAX_CONNECTIONS": "20", "GATEWAY_IDLE_TIMEOUT": "70"]
        let flags = ["max_connections": "30"]

        let fileOnly = try Settings.resolve(flags: [:], environment: [:], configFile: file.path)
        #expect(fileOnly.config.port == 7100)
        #expect(fileOnly.config.poller == .poll)
        #expect(fileOnly.config.maxConnections == 10)
        #expect(fileOnly.logLevel == .debug)

        let all = try Settings.resolve(flags: flags, environment: environment, configFile: file.path)
        #expect(all.config.port == 7100, "only the file sets port")
        #expect(all.logLevel == .debug, "only the file sets log_level")
        #expect(all.config.poller == .epoll, "environment beats file")
        #expect(all.config.idleTimeout == 70, "environment beats file")
        #expect(all.config.maxConnections == 30, "flag beats environment and file")
    }

    @Test func flagsBeatEnvironmentWithoutAFile() throws {
        let settings = try Settings.resolve(
            flags: ["port": "7300", "log_level": "error"],
            environment: ["GATEWAY_PORT": "7200", "GATEWAY_LOG_LEVEL": "trace", "GATEWAY_STATS_INTERVAL": "0"],
            configFile: nil)
        #expect(settings.config.port == 7300)
        #expect(settings.logLevel == .error)
        #expect(settings.statsInterval == 0)
    }

    /// Every key is read from GATEWAY_<KEY>, the name --help promises.
    @Test(arguments: GatewayConfig.ranges.map(\.key))
    func environmentNameOfEveryNumericKey(key: String) throws {
        let entry = try #require(GatewayConfig.ranges.first { $0.key == key })
        // The upper bound is valid for every key and differs from every default.
        let value = entry.range.upperBound
        let settings = try Settings.resolve(
            flags: [:], environment: [Settings.environmentName(of: key): String(value)], configFile: nil)
        #expect(settings.config[keyPath: entry.path] == value)
        #expect(GatewayConfig()[keyPath: entry.path] != value)
    }

    @Test func environmentNamesOfTheOtherKeys() throws {
        let settings = try Settings.resolve(flags: [:], environment: [
            Settings.environmentName(of: "host"): "0.0.0.0",
            Settings.environmentName(of: "poller"): "POLL",
            Settings.environmentName(of: "stats_interval"): "3",
            Settings.environmentName(of: "log_level"): "warning",
        ], configFile: nil)
        #expect(settings.config.host == "0.0.0.0")
        #expect(settings.config.poller == .poll)
        #expect(settings.statsInterval == 3)
        #expect(settings.logLevel == .warning)
    }

    @Test func unrelatedEnvironmentIsIgnored() throws {
        let settings = try Settings.resolve(
            flags: [:], environment: ["MAX_CONNECTIONS": "0", "PORT": "x", "GATEWAYPORT": "x"], configFile: nil)
        #expect(settings.config == GatewayConfig())
    }
}
