import Foundation
import GatewayCLI
import Logging
import Testing

/// `--log-format json`: every line one JSON object that a collector can parse.
@Suite struct LogFormatTests {
    @Test func aLineIsOneParsableObjectWithEveryField() throws {
        let line = JSONLogHandler.line(time: Date(timeIntervalSince1970: 1_800_000_000.25), level: .warning,
                                       label: "gateway", source: "GatewayCore",
                                       message: "closing 10.0.0.1:5 \"quoted\"\n\tand \\ a \u{1}",
                                       metadata: ["peer": "10.0.0.1", "cause": "flood"])
        #expect(!line.contains("\n"), "one line")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["level"] as? String == "warning")
        #expect(object["label"] as? String == "gateway")
        #expect(object["source"] as? String == "GatewayCore")
        #expect(object["message"] as? String == "closing 10.0.0.1:5 \"quoted\"\n\tand \\ a \u{1}")
        #expect((object["time"] as? String)?.hasPrefix("2027-01-15T08:00:00.25") == true)
        #expect(object["metadata"] as? [String: String] == ["peer": "10.0.0.1", "cause": "flood"])
    }

    @Test func theSettingFromEveryLayer() throws {
        #expect(try Settings.resolve(flags: ["log_format": "JSON"], environment: [:], configFile: nil).logFormat == .json)
        #expect(try Settings.resolve(flags: [:], environment: ["GATEWAY_LOG_FORMAT": "json"],
                                     configFile: nil).logFormat == .json)
        #expect(try Settings.resolve(flags: [:], environment: [:], configFile: nil).logFormat == .text)
        do {
            _ = try Settings.resolve(flags: ["log_format": "xml"], environment: [:], configFile: nil)
            Issue.record("xml accepted")
        } catch {
            #expect(error.key == "log_format")
            #expect(error.allowed == "text|json")
        }
    }
}
