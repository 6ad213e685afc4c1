import GatewayCLI
import GatewayCore
import Testing

/// The protection settings from every layer, and bad values naming their keys.
@Suite struct ProtectionSettingsTests {
    @Test func listsFromFlagEnvironmentAndFile() throws {
        let flag = try Settings.resolve(flags: ["allow": "10.0.0.0/8, ::1", "deny": "10.9.0.0/16",
                                                "max_conns_per_ip": "5", "flood_frames_per_s": "100"],
                                        environment: [:], configFile: nil)
        #expect(flag.config.allow == [CIDR(parsing: "10.0.0.0/8")!, CIDR(parsing: "::1")!])
        #expect(flag.config.deny == [CIDR(parsing: "10.9.0.0/16")!])
        #expect(flag.config.maxConnsPerIP == 5)
        #expect(flag.config.floodFramesPerSecond == 100)
        let env = try Settings.resolve(flags: [:], environment: ["GATEWAY_DENY": "192.168.0.0/16",
                                                                 "GATEWAY_ACCEPT_RATE": "1000"], configFile: nil)
        #expect(env.config.deny == [CIDR(parsing: "192.168.0.0/16")!])
        #expect(env.config.acceptRate == 1000)
        let file = try TemporaryFile("""
            allow:
              - 127.0.0.0/8
              - 2001:db8::/32
            frame_timeout: 5
            max_pending_bytes: 1048576
            """)
        defer { file.remove() }
        let yaml = try Settings.resolve(flags: [:], environment: [:], configFile: file.path)
        #expect(yaml.config.allow == [CIDR(parsing: "127.0.0.0/8")!, CIDR(parsing: "2001:db8::/32")!])
        #expect(yaml.config.frameTimeout == 5)
        #expect(yaml.config.maxPendingBytes == 1 << 20)
        #expect(yaml.warnings.isEmpty)
    }

    @Test func badValuesNameTheirKeys() {
        for (key, value) in [("allow", "10.0.0.0/33"), ("deny", "example.com"), ("max_conns_per_ip", "-1"),
                             ("conn_rate_per_ip", "x"), ("frame_timeout", "86401"), ("flood_bytes_per_s", "-5"),
                             // A NUL (a YAML "\0") would end the C string inet_pton reads (found by the fuzzer).
                             ("allow", "10.0.0.0\u{0}junk/8"), ("host", "127.0.0.1\u{0}x"),
                             ("upstream", "127.0.0.1\u{0}x:7100"), ("listen", "127.0.0.1\u{0}:80")] {
            do {
                _ = try Settings.resolve(flags: [key: value], environment: [:], configFile: nil)
                Issue.record("\(key)=\(value) accepted")
            } catch {
                #expect(error.key == key)
            }
        }
    }

    @Test func listenAddresses() throws {
        let flag = try Settings.resolve(flags: ["listen": "127.0.0.1:7000,[::1]:7001"], environment: [:],
                                        configFile: nil)
        #expect(flag.config.listenAddresses == [GatewayConfig.ListenAddress(host: "127.0.0.1", port: 7000),
                                                GatewayConfig.ListenAddress(host: "::1", port: 7001)])
        #expect(GatewayConfig().listenAddresses == [GatewayConfig.ListenAddress(host: "127.0.0.1", port: 7000)],
                "none given: host and port")
        for bad in ["::1:7000", "[1.2.3.4]:1", "127.0.0.1", "127.0.0.1:70000", "[::1]", "host:80"] {
            do {
                _ = try Settings.resolve(flags: ["listen": bad], environment: [:], configFile: nil)
                Issue.record("listen \(bad) accepted")
            } catch {
                #expect(error.key == "listen")
            }
        }
    }
}
