import XCTest
@testable import BinTestKit

/// Each kind of broken server must be seen, named, and turned into a failing exit status.
final class FaultDetectionTests: XCTestCase {
    private func run(against fault: FaultyEchoServer.Fault,
                     _ configure: (inout ClientSettings) -> Void = { _ in }) throws -> ClientReport {
        let server = try FaultyEchoServer(fault: fault)
        defer { server.stop() }
        return ClientRun.run(testSettings(port: server.port) {
            $0.count = 100
            configure(&$0)
        })
    }

    private func assertFault(_ report: ClientReport, _ expected: String, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertGreaterThan(report.errors, 0, file: file, line: line)
        XCTAssertEqual(report.exitCode, 1, file: file, line: line)
        XCTAssertTrue(report.messages.contains { $0.contains(expected) },
                      "no message contains '\(expected)': \(report.messages)", file: file, line: line)
    }

    func testCleanServerPasses() throws {
        let report = try run(against: .none)
        XCTAssertEqual(report.messages, [])
        XCTAssertEqual(report.replies, 100)
        XCTAssertEqual(report.exitCode, 0)
    }

    func testCorruptedByteIsNamed() throws {
        let report = try run(against: .corrupt(seq: 10, byte: 5))
        assertFault(report, "conn 0 seq 10: body mismatch at byte 5")
        XCTAssertEqual(report.replies, 9)
    }

    func testDroppedReplyIsNamed() throws {
        assertFault(try run(against: .drop(seq: 10)), "conn 0: reply seq 11, expected 10 (reordered or dropped)")
    }

    func testReorderedRepliesAreNamed() throws {
        assertFault(try run(against: .swap(seq: 10)), "conn 0: reply seq 11, expected 10 (reordered or dropped)")
    }

    func testErrorStatusIsNamed() throws {
        assertFault(try run(against: .status(seq: 10)), "conn 0 seq 10: reply status 7")
    }

    func testReplyCutShortIsNamed() throws {
        let report = try run(against: .closeMidReply(seq: 10))
        assertFault(report, "conn 0 seq 10: short reply, connection closed by server after 265 of 530 bytes")
    }

    func testCloseWithRequestsOutstandingIsNamed() throws {
        let report = try run(against: .close(seq: 10))
        assertFault(report, "conn 0: closed by server with")
        assertFault(report, "first unanswered seq 10")
    }

    func testStalledServerEndsAtTheDeadline() throws {
        let report = try run(against: .stall(seq: 10)) {
            $0.duration = 0.5
            $0.grace = 0.3
        }
        assertFault(report, "conn 0: server stalled")
        assertFault(report, "first unanswered seq 10")
    }

    func testFaultOnOneConnectionLeavesTheOthersRunning() throws {
        let report = try run(against: .corrupt(seq: 3, byte: 0)) {
            $0.conns = 4
            $0.threads = 2
        }
        XCTAssertEqual(report.errors, 1)
        XCTAssertTrue(report.messages[0].hasSuffix("seq 3: body mismatch at byte 0 (got \(FramePattern.bodyByte(seq: 3, index: 0) ^ 0x5A), expected \(FramePattern.bodyByte(seq: 3, index: 0)))"),
                      report.messages[0])
        // The three good connections finish their 25 requests each; the bad one got two replies.
        XCTAssertEqual(report.replies, 3 * 25 + 2)
    }

    func testLegacyCommandLineExitsNonZeroOnAFault() throws {
        let server = try FaultyEchoServer(fault: .corrupt(seq: 2, byte: 0))
        defer { server.stop() }
        let status = BinTest.main(arguments: ["0", "127.0.0.1", "\(server.port)", "1", "1",
                                              "--count", "10", "--duration", "1", "--quiet"])
        XCTAssertEqual(status, 1)
    }

    func testRefusedConnectionsAreConnectFailures() throws {
        // A port that was just bound and closed again: nothing listens there.
        let server = try FaultyEchoServer()
        server.stop()
        let report = ClientRun.run(testSettings(port: server.port) { $0.conns = 3 })
        XCTAssertEqual(report.connectFailures, 3)
        XCTAssertEqual(report.exitCode, 1)
        XCTAssertTrue(report.messages[0].contains("connect to 127.0.0.1:\(server.port) failed"), report.messages[0])
    }
}
