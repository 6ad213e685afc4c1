import Foundation
import XCTest
@testable import BinTestKit

/// The --json summary and the --hgrm distribution.
final class ReportOutputTests: XCTestCase {
    private func report(_ configure: (inout ClientSettings) -> Void) throws -> ClientReport {
        let server = try FaultyEchoServer()
        defer { server.stop() }
        return ClientRun.run(testSettings(port: server.port, configure))
    }

    private func parse(_ json: String) throws -> [String: Any] {
        XCTAssertFalse(json.contains("\n"), "one line")
        return try XCTUnwrap(JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any])
    }

    func testLoadJSONCarriesEveryFigure() throws {
        let report = try report {
            $0.conns = 2
            $0.count = 60
        }
        let object = try parse(report.json)
        for key in ["replies_per_s", "mb_per_s", "errors", "replies", "connect_failures", "duration_s",
                    "mode", "conns", "pipeline", "size", "latency_us"] {
            XCTAssertNotNil(object[key], key)
        }
        XCTAssertEqual(object["replies"] as? Int, 60)
        XCTAssertEqual(object["errors"] as? Int, 0)
        XCTAssertEqual(object["mode"] as? String, "load")
        XCTAssertEqual(object["conns"] as? Int, 2)
        XCTAssertEqual(object["size"] as? Int, 512)
        let latency = try XCTUnwrap(object["latency_us"] as? [String: Double])
        XCTAssertEqual(Set(latency.keys), ["p50", "p90", "p99", "p999", "max"])
        XCTAssertGreaterThan(latency["p50"]!, 0)
        XCTAssertLessThanOrEqual(latency["p50"]!, latency["p99"]!)
        XCTAssertLessThanOrEqual(latency["p999"]!, latency["max"]!)
        let perSecond = try XCTUnwrap(object["replies_per_s"] as? Double)
        let megabytes = try XCTUnwrap(object["mb_per_s"] as? Double)
        XCTAssertEqual(megabytes, perSecond * 530 / 1e6, accuracy: 1e-6)
    }

    func testConnrateAndIdleJSONCarryTheirFigures() throws {
        let connrate = try parse(try report {
            $0.mode = .connrate
            $0.count = 5
        }.json)
        XCTAssertEqual(connrate["mode"] as? String, "connrate")
        XCTAssertNotNil(connrate["connections_per_s"] as? Double)
        XCTAssertEqual(connrate["connections"] as? Int, 5)

        let idle = try parse(try report {
            $0.mode = .idle
            $0.conns = 2
            $0.duration = 0.2
        }.json)
        XCTAssertEqual(idle["alive_before"] as? Int, 2)
        XCTAssertEqual(idle["alive_after"] as? Int, 2)
    }

    func testFaultsAppearInJSON() throws {
        let server = try FaultyEchoServer(fault: .drop(seq: 3))
        defer { server.stop() }
        let object = try parse(ClientRun.run(testSettings(port: server.port) { $0.count = 10 }).json)
        XCTAssertEqual(object["errors"] as? Int, 1)
        XCTAssertEqual(object["ok"] as? Bool, false)
        XCTAssertEqual(object["error_messages"] as? [String], ["conn 0: reply seq 4, expected 3 (reordered or dropped)"])
    }

    func testHgrmIsTheStandardPercentileDistribution() throws {
        let report = try report { $0.count = 200 }
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("bin_test-\(getpid()).hgrm").path
        defer { try? FileManager.default.removeItem(atPath: path) }
        try report.writeHgrm(to: path)
        let text = try String(contentsOfFile: path, encoding: .utf8)
        let lines = text.split(separator: "\n")
        XCTAssertEqual(lines.first?.split(separator: " ").map(String.init), ["Value", "Percentile", "TotalCount", "1/(1-Percentile)"])
        XCTAssertTrue(lines.contains { $0.hasPrefix("#[Mean    =") })
        XCTAssertTrue(lines.contains { $0.hasPrefix("#[Max     =") })
        XCTAssertTrue(lines.contains { $0.contains("Total count    =          200") })
        // Values are microseconds: the last row's value is the maximum.
        let rows = lines.dropFirst().filter { !$0.hasPrefix("#") }.map { $0.split(separator: " ") }
        XCTAssertEqual(try XCTUnwrap(Double(rows.last![0])), report.maxLatencyMicroseconds, accuracy: 0.01)
    }
}
