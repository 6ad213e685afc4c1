import XCTest
import Foundation
@testable import BinTestKit
@testable import GatewayCore

/// `bin_test client --transport udp` against a gateway's UDP listener (docs/UDP.md): load, ping-pong
/// and push mode through a core, every reply checked. A client never has more datagrams in flight per
/// session than its pipeline (16 at most here), which the gateway's per-session queue holds, so on
/// loopback none is dropped.
final class UDPTransportTests: GatewayTestCase {
    private func gateway(_ configure: (inout GatewayConfig) -> Void = { _ in }) throws -> Gateway {
        try gateway(listen: [.init(host: "127.0.0.1", port: 0), .init(host: "127.0.0.1", port: 0, udp: true)], configure)
    }

    func testLoadAndPingpongOverUDPAreEchoedAndChecked() throws {
        let g = try gateway()
        for (mode, size, count) in [(ClientMode.load, 512, 2000), (.pingpong, 0, 50), (.load, 100, 1000)] {
            let report = ClientRun.run(testSettings(port: g.ports[1]) {
                $0.transport = .udp
                $0.mode = mode
                $0.size = size
                $0.pipeline = 8
                $0.conns = mode == .pingpong ? 1 : 4
                $0.count = UInt64(count)
            })
            XCTAssertEqual(report.messages, [], "\(mode) size \(size)")
            XCTAssertEqual(report.replies, UInt64(count), "\(mode) size \(size)")
            XCTAssertEqual(report.exitCode, 0)
        }
        let s = g.stats().udp
        XCTAssertEqual(s.sessionsOpened, 9)
        XCTAssertEqual(s.sessionsProven, 9, "every bin_test session echoes its token")
        XCTAssertEqual(s.queueFull + s.sendFull + s.withheldDatagrams, 0)
    }

    func testPushesReachUDPClientsThroughACore() throws {
        var logger = ServerMode.makeLogger()
        logger.logLevel = .error
        var settings = CoreSettings()
        settings.port = 0
        settings.push.rate = 2000
        settings.push.scope = .uid
        settings.push.uids = 5
        settings.push.after = 0.8
        settings.push.count = 400
        let (coreGateway, core) = try CoreMode.start(settings, logger: logger)
        running.append(coreGateway)
        let access = try gateway { $0.upstream = [GatewayConfig.Upstream(host: "127.0.0.1", port: coreGateway.port)] }
        let deadline = Date().addingTimeInterval(10)
        while access.stats().linksUp < 2 && Date() < deadline { usleep(5_000) }
        XCTAssertEqual(access.stats().linksUp, 2, "links up")
        let report = ClientRun.run(testSettings(port: access.ports[1]) {
            $0.transport = .udp
            $0.mode = .push
            $0.conns = 10
            $0.pushUids = 5
            $0.pushScope = .uid
            $0.duration = 400.0 / 2000 + 0.5
        })
        XCTAssertEqual(report.messages, [])
        XCTAssertEqual(core.pushes, 400)
        XCTAssertEqual(core.udpOpened, 10, "OPENED says UDP")
        // 10 connections over 5 uids: each push reaches the 2 logged in as its target.
        XCTAssertEqual(report.replies, 400 * 2, "\(access.stats().udp) \(access.stats().pushNobody)")
        XCTAssertEqual(access.stats().udp.withheldDatagrams, 0, "each client proved its address after its login")
        XCTAssertEqual(report.exitCode, 0)
    }
}
