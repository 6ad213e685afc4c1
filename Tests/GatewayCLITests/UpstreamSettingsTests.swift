import GatewayCLI
import GatewayCore
import Testing

/// --upstream and its companions from every layer: flag, environment, YAML list or string.
@Suite struct UpstreamSettingsTests {
    private let two = [GatewayConfig.Upstream(host: "127.0.0.1", port: 7100),
                       GatewayConfig.Upstream(host: "127.0.0.2", port: 7101)]

    @Test func flagEnvironmentAndFileForms() throws {
        let flag = try Settings.resolve(flags: ["upstream": "127.0.0.1:7100, 127.0.0.2:7101", "upstream_links": "3",
                                                "node_id": "4294967295"], environment: [:], configFile: nil)
        #expect(flag.config.upstream == two)
        #expect(flag.config.upstreamLinks == 3)
        #expect(flag.config.nodeID == UInt32.max)
        let env = try Settings.resolve(flags: [:], environment: ["GATEWAY_UPSTREAM": "127.0.0.1:7100,127.0.0.2:7101"],
                                       configFile: nil)
        #expect(env.config.upstream == two)
        let file = try TemporaryFile("""
            upstream:
              - 127.0.0.1:7100
              - 127.0.0.2:7101
            link_heartbeat_ms: 250
            """)
        defer { file.remove() }
        let yaml = try Settings.resolve(flags: [:], environment: [:], configFile: file.path)
        #expect(yaml.config.upstream == two)
        #expect(yaml.config.linkHeartbeatMilliseconds == 250)
        #expect(yaml.warnings.isEmpty)
        // A flag overrides the file's list.
        let both = try Settings.resolve(flags: ["upstream": "127.0.0.9:1"], environment: [:], configFile: file.path)
        #expect(both.config.upstream == [GatewayConfig.Upstream(host: "127.0.0.9", port: 1)])
        #expect(GatewayConfig().upstream.isEmpty, "no upstream by default: the echo handler answers")
    }

    @Test(arguments: ["localhost:7100", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:x", ":7100"])
    func badUpstreamNamesTheKey(_ value: String) {
        #expect(throws: ConfigError.self) {
            try Settings.resolve(flags: ["upstream": value], environment: [:], configFile: nil)
        }
        do {
            _ = try Settings.resolve(flags: ["upstream": value], environment: [:], configFile: nil)
        } catch {
            #expect(error.key == "upstream")
            #expect(error.allowed.contains("HOST:PORT"))
        }
    }

    @Test func badCompanionsNameTheirKeys() {
        for (key, value) in [("upstream_links", "65"), ("node_id", "-1"), ("link_heartbeat_ms", "5"),
                             ("link_retry_max_ms", "0")] {
            do {
                _ = try Settings.resolve(flags: [key: value], environment: [:], configFile: nil)
                Issue.record("\(key)=\(value) accepted")
            } catch {
                #expect(error.key == key)
            }
        }
        #expect(GatewayConfig().effectiveNodeID(port: 7000) == GatewayConfig().effectiveNodeID(port: 7000))
        #expect(GatewayConfig().effectiveNodeID(port: 7000) != GatewayConfig().effectiveNodeID(port: 7001))
    }

    @Test func roleFromEveryLayerAndItsChecks() throws {
        #expect(GatewayConfig().role == .access)
        let flag = try Settings.resolve(flags: ["role": "Aggregation", "upstream": "127.0.0.1:7100"],
                                        environment: [:], configFile: nil)
        #expect(flag.config.role == .aggregation)
        let env = try Settings.resolve(flags: [:], environment: ["GATEWAY_ROLE": "aggregation",
                                                                 "GATEWAY_UPSTREAM": "127.0.0.1:7100"], configFile: nil)
        #expect(env.config.role == .aggregation)
        for (flags, allowed) in [(["role": "core"], "access|aggregation"),
                                 (["role": "aggregation"], "aggregation with upstream set")] {
            do {
                _ = try Settings.resolve(flags: flags, environment: [:], configFile: nil)
                Issue.record("\(flags) accepted")
            } catch {
                #expect(error.key == "role")
                #expect(error.allowed.contains(allowed), "\(error)")
            }
        }
    }
}
