import XCTest
@testable import BinTestKit

/// Each mode against a correct echo server, and idle mode against one that drops a connection.
final class ClientModeTests: XCTestCase {
    private func run(_ fault: FaultyEchoServer.Fault = .none,
                     _ configure: (inout ClientSettings) -> Void) throws -> ClientReport {
        try runWithServer(fault, configure).report
    }

    /// The run and the (stopped) server, for tests that check what the server saw.
    private func runWithServer(_ fault: FaultyEchoServer.Fault = .none,
                               _ configure: (inout ClientSettings) -> Void) throws -> (report: ClientReport, server: FaultyEchoServer) {
        let server = try FaultyEchoServer(fault: fault)
        defer { server.stop() }
        return (ClientRun.run(testSettings(port: server.port, configure)), server)
    }

    func testPingpongKeepsOneRequestInFlight() throws {
        let report = try run {
            $0.mode = .pingpong
            $0.pipeline = 16
            $0.count = 50
        }
        XCTAssertEqual(report.messages, [])
        XCTAssertEqual(report.replies, 50)
        XCTAssertEqual(report.exitCode, 0)
    }

    func testEmptyBodies() throws {
        let report = try run {
            $0.size = 0
            $0.count = 100
        }
        XCTAssertEqual(report.messages, [])
        XCTAssertEqual(report.replies, 100)
        XCTAssertEqual(report.replyBytes, 100 * 18)
    }

    func testConnrateCountsConnectEchoCloseCycles() throws {
        let (report, server) = try runWithServer {
            $0.mode = .connrate
            $0.conns = 2
            $0.count = 20
        }
        XCTAssertEqual(report.messages, [])
        XCTAssertEqual(report.connections, 20)
        XCTAssertEqual(report.replies, 20)
        XCTAssertEqual(server.connections, 20)
        XCTAssertEqual(report.exitCode, 0)
    }

    func testConnectionsComeFromEachSourceInTurn() throws {
        let (report, server) = try runWithServer {
            $0.mode = .connrate
            $0.conns = 1
            $0.sources = ["127.0.0.2", "127.0.0.3"]
            $0.count = 20
        }
        XCTAssertEqual(report.messages, [])
        XCTAssertEqual(report.connections, 20)
        XCTAssertEqual(server.connectionsByPeer, ["127.0.0.2": 10, "127.0.0.3": 10])
    }

    func testOpenLoopNeverSendsAheadOfTheSchedule() throws {
        let report = try run {
            $0.rate = 1000
            $0.conns = 2
            $0.duration = 0.5
        }
        XCTAssertEqual(report.messages, [])
        XCTAssertGreaterThan(report.replies, 0)
        // Sends are due at start + k ms for k < 500: never more than 500, whatever the timing.
        XCTAssertLessThanOrEqual(report.replies, 500)
    }

    func testOpenLoopHonoursCount() throws {
        let report = try run {
            $0.rate = 2000
            $0.count = 40
        }
        XCTAssertEqual(report.messages, [])
        XCTAssertEqual(report.replies, 40)
    }

    func testIdleConnectionsSurvive() throws {
        let report = try run {
            $0.mode = .idle
            $0.conns = 3
            $0.duration = 0.3
        }
        XCTAssertEqual(report.messages, [])
        XCTAssertEqual(report.aliveBefore, 3)
        XCTAssertEqual(report.aliveAfter, 3)
        XCTAssertEqual(report.exitCode, 0)
    }

    func testIdleConnectionClosedDuringTheHoldFails() throws {
        let report = try run(.closeAfterReply(seq: 1)) {
            $0.mode = .idle
            $0.conns = 2
            $0.duration = 0.3
        }
        XCTAssertEqual(report.aliveBefore, 2)
        XCTAssertEqual(report.aliveAfter, 1)
        XCTAssertEqual(report.errors, 1)
        XCTAssertTrue(report.messages[0].hasSuffix("closed by server during the idle hold"), report.messages[0])
        XCTAssertEqual(report.exitCode, 1)
    }
}
