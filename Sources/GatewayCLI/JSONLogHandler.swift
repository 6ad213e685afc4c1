import Foundation
import Logging

/// `--log-format json`: one JSON object per line on stderr, for log collectors:
/// {"time":"2026-12-02T01:02:03.456Z","level":"warning","label":"gateway","source":"GatewayCore",
///  "message":"...","metadata":{...}}. Lines are written whole, with one write each.
public struct JSONLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level = .info
    private let label: String

    public init(label: String) { self.label = label }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        var line = Self.line(time: Date(), level: event.level, label: label, source: event.source,
                             message: event.message.description, metadata: merged)
        line.append("\n")
        line.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
    }

    /// The JSON object for one event (no newline).
    public static func line(time: Date, level: Logger.Level, label: String, source: String, message: String,
                            metadata: Logger.Metadata) -> String {
        var fields = [("time", quoted(timestamp(time))), ("level", quoted(level.rawValue)), ("label", quoted(label)),
                      ("source", quoted(source)), ("message", quoted(message))]
        if !metadata.isEmpty {
            let pairs = metadata.sorted { $0.key < $1.key }.map { "\(quoted($0.key)):\(quoted("\($0.value)"))" }
            fields.append(("metadata", "{" + pairs.joined(separator: ",") + "}"))
        }
        return "{" + fields.map { "\(quoted($0.0)):\($0.1)" }.joined(separator: ",") + "}"
    }

    /// Made once: a formatter per line would allocate and configure one for every log line.
    nonisolated(unsafe) private static let formatter: ISO8601DateFormatter = {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter
    }()
    private static let formatterLock = NSLock()

    private static func timestamp(_ date: Date) -> String {
        // ISO8601DateFormatter is not documented as thread-safe; lines come from every thread.
        formatterLock.withLock { formatter.string(from: date) }
    }

    /// A JSON string literal: quotes, backslashes and control characters escaped.
    static func quoted(_ text: String) -> String {
        var out = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20: out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}

/// How the gateway writes its log lines.
public enum LogFormat: String, CaseIterable, Sendable, NamedSetting {
    case text, json
    public static var settingKey: String { "log_format" }
}
