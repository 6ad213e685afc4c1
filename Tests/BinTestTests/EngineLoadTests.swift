import XCTest
@testable import BinTestKit

/// bin_test's client against bin_test's server (the engine with the echo handler), in process.
final class EngineLoadTests: XCTestCase {
    func testClientAgainstEngineSeesNoError() throws {
        var server = ServerSettings()
        server.port = 0
        let gateway = try ServerMode.start(server)
        defer { gateway.stop() }

        let report = ClientRun.run(testSettings(port: gateway.port) {
            $0.conns = 8
            $0.threads = 2
            $0.pipeline = 16
            $0.duration = 1
        })

        XCTAssertEqual(report.messages, [])
        XCTAssertEqual(report.errors, 0)
        XCTAssertEqual(report.connectFailures, 0)
        XCTAssertGreaterThan(report.replies, 0)
        XCTAssertEqual(report.latency.totalCount, report.replies)
        XCTAssertEqual(report.exitCode, 0)
    }

    func testPipelinedLargeFramesAgainstEngine() throws {
        var server = ServerSettings()
        server.port = 0
        let gateway = try ServerMode.start(server)
        defer { gateway.stop() }

        // Frames larger than one read or one send exercise split headers and bodies.
        let report = ClientRun.run(testSettings(port: gateway.port) {
            $0.conns = 2
            $0.threads = 1
            $0.size = 300_000
            $0.count = 200
        })

        XCTAssertEqual(report.messages, [])
        XCTAssertEqual(report.errors, 0)
        XCTAssertEqual(report.replies, 200)
        XCTAssertEqual(report.replyBytes, 200 * 300_018)
    }
}
