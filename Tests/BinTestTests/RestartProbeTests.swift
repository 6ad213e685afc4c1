import XCTest
import GatewayCore
@testable import BinTestKit

/// `bin_test restart-probe` behaves as PROTOCOL.md asks of a client on *please reconnect*.
final class RestartProbeTests: XCTestCase {
    /// The reply and the notice come in one write, so they are in the socket together when the probe
    /// reads: it must send nothing more on that connection (it once sent its next request on the
    /// reply, before it looked at the notice; a drain that ended then lost it). Then it reconnects.
    func testANoticeReadWithAReplyStopsTheNextRequest() throws {
        let server = try FaultyEchoServer(fault: .noticeWithReply(seq: 3))
        defer { server.stop() }
        var command = RestartProbeCommand()
        command.host = "127.0.0.1"
        command.port = "\(server.port)"
        command.connections = "1"
        command.rate = "0"
        command.duration = "1"
        command.size = "8"
        command.grace = "3"
        command.timeout = "5"
        let counts = RestartProbe(settings: try RestartProbeSettings(command)).run()
        // The probe closed that connection before it reconnected; the server's thread sees it end.
        for _ in 0..<1000 where server.bytesAfterNotice == nil { usleep(10_000) }
        XCTAssertEqual(server.bytesAfterNotice, 0, "nothing sent after the notice")
        XCTAssertEqual(counts.notices, 1)
        XCTAssertEqual(counts.reconnects, 1)
        XCTAssertEqual(counts.lost, 0)
        XCTAssertGreaterThan(counts.replies, 3, "served on after reconnecting")
        XCTAssertEqual(counts.replies, counts.requestsSent)
    }
}
