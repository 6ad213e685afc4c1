import Foundation
import GatewayCore
import Logging

/// Turns the text of one setting into its value, or a `ConfigError` naming the
/// key and what it allows. Every layer (file, environment, flags) arrives as text
/// so that a bad value reads the same wherever it came from.
enum SettingParsers {
    static func int(_ text: String, key: String, range: ClosedRange<Int>) throws(ConfigError) -> Int {
        guard let value = Int(text.trimmingWhitespace), range.contains(value) else {
            throw ConfigError(key: key, value: text, allowed: "\(range.lowerBound)...\(range.upperBound)")
        }
        return value
    }

    /// The engine listens on IPv4 addresses only; catching a name here makes it a
    /// bad setting (exit 2) rather than a failure to listen (exit 1).
    static func host(_ text: String, key: String = "host") throws(ConfigError) -> String {
        let host = text.trimmingWhitespace
        var address = in_addr()
        guard !host.utf8.contains(0), inet_pton(AF_INET, host, &address) == 1 else {
            throw ConfigError(key: key, value: text, allowed: "an IPv4 address such as 127.0.0.1")
        }
        return host
    }
}

extension SettingParsers {
    static let upstreamAllowed = "IPv4 [tls://]HOST:PORT[,[tls://]HOST:PORT...] with ports 1...65535"

    static let listenAllowed = "ADDR:PORT, IPv4 or [IPv6], ports 0...65535, tls://ADDR:PORT, ws://ADDR:PORT/PATH, "
        + "wss://ADDR:PORT/PATH or udp://ADDR:PORT, e.g. 127.0.0.1:7000,[::1]:7000,tls://127.0.0.1:7443,"
        + "ws://127.0.0.1:8080/gw,udp://0.0.0.0:7000"

    /// "127.0.0.1:7000,[::1]:7000" (or the items of a YAML list, or repeated flags) as listen addresses.
    static func listen(_ items: [String], key: String = "listen") throws(ConfigError) -> [GatewayConfig.ListenAddress] {
        var addresses: [GatewayConfig.ListenAddress] = []
        for item in items {
            for text in item.split(separator: ",").map({ String($0).trimmingWhitespace }) where !text.isEmpty {
                // ws://ADDR:PORT/PATH: a WebSocket listener; the path is a plain URL path; wss:// over TLS.
                var part = text
                var path: String? = nil
                // tls://ADDR:PORT: a TLS listener (docs/TLS.md).
                var tls = text.lowercased().hasPrefix("tls://")
                if tls { part = String(text.dropFirst(6)) }
                // udp://ADDR:PORT: a UDP socket (docs/UDP.md).
                let udp = text.lowercased().hasPrefix("udp://")
                if udp { part = String(text.dropFirst(6)) }
                let secure = text.hasPrefix("wss://")
                if text.hasPrefix("ws://") || secure {
                    tls = secure
                    let rest = text.dropFirst(secure ? 6 : 5)
                    guard let slash = rest.firstIndex(of: "/"),
                          rest[slash...].utf8.allSatisfy({ $0 > 0x20 && $0 < 0x7F && $0 != 0x3F && $0 != 0x23 }) else {
                        throw ConfigError(key: key, value: text, allowed: listenAllowed)
                    }
                    part = String(rest[..<slash])
                    path = String(rest[slash...])
                }
                guard let colon = part.lastIndex(of: ":"), let port = Int(part[part.index(after: colon)...]),
                      (0...65535).contains(port) else {
                    throw ConfigError(key: key, value: part, allowed: listenAllowed)
                }
                var host = String(part[..<colon])
                if host.hasPrefix("[") && host.hasSuffix("]") { host = String(host.dropFirst().dropLast()) }
                guard let network = CIDR(parsing: host), !host.contains("/"),
                      (network.family == 6) == part.hasPrefix("[") else {
                    throw ConfigError(key: key, value: part, allowed: listenAllowed)
                }
                addresses.append(GatewayConfig.ListenAddress(host: host, port: port, webSocketPath: path, tls: tls,
                                                             udp: udp))
            }
        }
        return addresses
    }

    static let originAllowed = "origins as browsers send them: scheme://host[:port] (no path), or null"

    /// WebSocket `Origin` values for ws_origin: "https://example.com", "http://localhost:8080", "null".
    static func origins(_ items: [String]) throws(ConfigError) -> [String] {
        var origins: [String] = []
        for item in items {
            for part in item.split(separator: ",").map({ String($0).trimmingWhitespace }) where !part.isEmpty {
                let valid: Bool
                if part == "null" {
                    valid = true
                } else if let scheme = part.range(of: "://") {
                    let host = part[scheme.upperBound...]
                    valid = !part[..<scheme.lowerBound].isEmpty && !host.isEmpty
                        && part.utf8.allSatisfy { $0 > 0x20 && $0 < 0x7F } && !host.contains("/")
                } else {
                    valid = false
                }
                guard valid else { throw ConfigError(key: "ws_origin", value: part, allowed: originAllowed) }
                origins.append(part)
            }
        }
        return origins
    }

    /// true/false (also on/off, yes/no, 1/0) for `key`.
    static func bool(_ text: String, key: String) throws(ConfigError) -> Bool {
        switch text.trimmingWhitespace.lowercased() {
        case "true", "on", "yes", "1": return true
        case "false", "off", "no", "0": return false
        default: throw ConfigError(key: key, value: text, allowed: "true or false")
        }
    }

    /// "10.0.0.0/8,::1" (or the items of a YAML list) as networks, for `key` (allow or deny).
    static func cidrs(_ items: [String], key: String) throws(ConfigError) -> [CIDR] {
        var networks: [CIDR] = []
        for item in items {
            for part in item.split(separator: ",").map({ String($0).trimmingWhitespace }) where !part.isEmpty {
                guard let network = CIDR(parsing: part) else {
                    throw ConfigError(key: key, value: part,
                                      allowed: "IPv4 or IPv6 addresses or networks, e.g. 10.0.0.0/8,2001:db8::/32,::1")
                }
                networks.append(network)
            }
        }
        return networks
    }

    /// "127.0.0.1:7100,127.0.0.2:7100" (or the items of a YAML list) as upstream servers.
    static func upstream(_ items: [String]) throws(ConfigError) -> [GatewayConfig.Upstream] {
        let parts = items.flatMap { $0.split(separator: ",") }.map { String($0).trimmingWhitespace }
        var servers: [GatewayConfig.Upstream] = []
        for whole in parts where !whole.isEmpty {
            let tls = whole.lowercased().hasPrefix("tls://")
            let part = tls ? String(whole.dropFirst(6)) : whole
            guard let colon = part.lastIndex(of: ":"), let port = Int(part[part.index(after: colon)...]),
                  (1...65535).contains(port) else {
                throw ConfigError(key: "upstream", value: whole, allowed: upstreamAllowed)
            }
            let host = String(part[..<colon])
            var address = in_addr()
            guard !host.utf8.contains(0), inet_pton(AF_INET, host, &address) == 1 else {
                throw ConfigError(key: "upstream", value: whole, allowed: upstreamAllowed)
            }
            servers.append(GatewayConfig.Upstream(host: host, port: port, tls: tls))
        }
        return servers
    }
}

/// A setting whose value is one of a few names (poller, role, push_overflow, log_level):
/// parsed case-insensitively, refused with the key and the names allowed.
public protocol NamedSetting: CaseIterable, RawRepresentable where RawValue == String {
    static var settingKey: String { get }
}

extension NamedSetting {
    public static var allowedNames: String { allCases.map(\.rawValue).joined(separator: "|") }

    public init(parsing text: String, key: String = Self.settingKey) throws(ConfigError) {
        guard let value = Self(rawValue: text.trimmingWhitespace.lowercased()) else {
            throw ConfigError(key: key, value: text, allowed: Self.allowedNames)
        }
        self = value
    }
}

extension PollerKind: NamedSetting { public static var settingKey: String { "poller" } }
extension GatewayRole: NamedSetting { public static var settingKey: String { "role" } }
extension PushOverflow: NamedSetting { public static var settingKey: String { "push_overflow" } }
extension Logger.Level: NamedSetting { public static var settingKey: String { "log_level" } }

extension String {
    var trimmingWhitespace: String { trimmingCharacters(in: .whitespacesAndNewlines) }
}
