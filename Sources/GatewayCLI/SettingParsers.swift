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
}

extension PollerKind {
    public static let allowedNames = allCases.map(\.rawValue).joined(separator: "|")

    /// Parses a poller name, e.g. from a flag; throws naming `key` and the allowed names.
    public init(parsing text: String, key: String = "poller") throws(ConfigError) {
        guard let kind = PollerKind(rawValue: text.trimmingWhitespace.lowercased()) else {
            throw ConfigError(key: key, value: text, allowed: Self.allowedNames)
        }
        self = kind
    }
}

extension Logger.Level {
    static let allowedNames = allCases.map(\.rawValue).joined(separator: "|")

    init(parsing text: String, key: String = "log_level") throws(ConfigError) {
        guard let level = Logger.Level(rawValue: text.trimmingWhitespace.lowercased()) else {
            throw ConfigError(key: key, value: text, allowed: Self.allowedNames)
        }
        self = level
    }
}

extension String {
    var trimmingWhitespace: String { trimmingCharacters(in: .whitespacesAndNewlines) }
}
