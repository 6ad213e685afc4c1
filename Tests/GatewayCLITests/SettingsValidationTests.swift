import GatewayCLI
import GatewayCore
import Testing

/// Which layer a bad value arrives through; each must be caught the same way.
enum Layer: CaseIterable {
    case flag, environment, file
}

/// Resolves with `key: value` set in one layer only.
func resolve(_ key: String, _ value: String, in layer: Layer) throws(ConfigError) -> Settings {
    switch layer {
    case .flag:
        return try Settings.resolve(flags: [key: value], environment: [:], configFile: nil)
    case .environment:
        return try Settings.resolve(flags: [:], environment: [Settings.environmentName(of: key): value], configFile: nil)
    case .file:
        let file = try! TemporaryFile("\(key): \"\(value)\"\n")
        defer { file.remove() }
        return try Settings.resolve(flags: [:], environment: [:], configFile: file.path)
    }
}

/// The error a bad value raises, or nil if it was accepted.
func rejection(_ key: String, _ value: String, in layer: Layer) -> ConfigError? {
    do {
        _ = try resolve(key, value, in: layer)
        return nil
    } catch {
        return error
    }
}

@Suite struct SettingsValidationTests {
    static let badNumbers = GatewayConfig.ranges.flatMap { entry in
        [(entry.key, String(entry.range.lowerBound - 1)), (entry.key, String(entry.range.upperBound + 1)),
         (entry.key, "abc"), (entry.key, "")]
    } + [("stats_interval", "-1"), ("stats_interval", "86401"), ("stats_interval", "ten"),
         ("ring_capacity", "12"), ("poller", "kqueue"), ("log_level", "loud"), ("host", ""), ("host", "localhost"), ("host", "1.2.3")]

    @Test(arguments: badNumbers, Layer.allCases)
    func badValueNamesItsKey(bad: (key: String, value: String), layer: Layer) {
        let error = rejection(bad.key, bad.value, in: layer)
        #expect(error?.key == bad.key, "\(bad.key)=\(bad.value) via \(layer)")
        #expect(error?.value == bad.value)
    }

    @Test(arguments: GatewayConfig.ranges.map(\.key))
    func boundsAreAccepted(key: String) throws {
        let entry = try #require(GatewayConfig.ranges.first { $0.key == key })
        // 4 is ring_capacity's lower bound and a power of two; other keys' bounds have no extra rule.
        for bound in [entry.range.lowerBound, entry.range.upperBound] {
            let settings = try resolve(key, String(bound), in: .flag)
            #expect(settings.config[keyPath: entry.path] == bound)
        }
    }

    @Test func messageNamesKeyValueAndRange() {
        let error = rejection("max_connections", "0", in: .flag)
        #expect(error?.description == "invalid max_connections '0': allowed 1...50000000")
    }

    @Test func unknownPollerListsTheKnownOnes() {
        let error = rejection("poller", "select", in: .environment)
        #expect(error == ConfigError(key: "poller", value: "select", allowed: "epoll|poll"))
    }

    @Test func unknownLogLevelListsTheKnownOnes() {
        let error = rejection("log_level", "verbose", in: .flag)
        #expect(error?.allowed == "trace|debug|info|notice|warning|error|critical")
    }

    @Test func valuesAreCaseAndSpaceTolerant() throws {
        let settings = try Settings.resolve(
            flags: ["poller": " Poll ", "log_level": "DEBUG", "port": " 7001 "], environment: [:], configFile: nil)
        #expect(settings.config.poller == .poll)
        #expect(settings.logLevel == .debug)
        #expect(settings.config.port == 7001)
    }

    /// A bad value in a lower layer does not matter once a higher one overrides it.
    @Test func overriddenBadValueIsNotAnError() throws {
        let settings = try Settings.resolve(
            flags: ["max_connections": "5"], environment: ["GATEWAY_MAX_CONNECTIONS": "0"], configFile: nil)
        #expect(settings.config.maxConnections == 5)
    }

    @Test func serverHelperValidates() throws {
        let config = try GatewayConfig.validated(host: "127.0.0.1", port: 0, poller: "poll")
        #expect(config.poller == .poll)
        #expect(config.port == 0)
        #expect(throws: ConfigError(key: "poller", value: "select", allowed: "epoll|poll")) {
            try GatewayConfig.validated(host: "127.0.0.1", port: 0, poller: "select")
        }
        #expect(throws: ConfigError(key: "host", value: "::1", allowed: "an IPv4 address such as 127.0.0.1")) {
            try GatewayConfig.validated(host: "::1", port: 0, poller: "epoll")
        }
        #expect(throws: ConfigError(key: "port", value: "70000", allowed: "0...65535")) {
            try GatewayConfig.validated(host: "127.0.0.1", port: 70000, poller: "epoll")
        }
    }

    @Test func udpListenersParseAndAreRefusedOnAggregation() throws {
        let settings = try resolve("listen", "127.0.0.1:7000,udp://127.0.0.1:7001,udp://[::1]:7002", in: .flag)
        #expect(settings.config.listen.map(\.udp) == [false, true, true])
        #expect(settings.config.listen[1].description == "udp://127.0.0.1:7001")
        #expect(settings.config.listen[2].host == "::1")
        #expect(rejection("listen", "udp://127.0.0.1", in: .file)?.key == "listen")
        var config = settings.config
        config.role = .aggregation
        config.upstream = [GatewayConfig.Upstream(host: "127.0.0.1", port: 7100)]
        #expect(throws: ConfigError.self) { try config.validate() }
    }
}
