import XCTest
@testable import BinTestKit
@testable import GatewayCore

/// `bin_test client --transport ws` against a gateway's WebSocket listener: load, pingpong, big
/// frames that span the gateway's partial writes, and push mode through a core, every reply checked.
final class WebSocketTransportTests: GatewayTestCase {
    private func gateway(_ configure: (inout GatewayConfig) -> Void = { _ in }) throws -> Gateway {
        try gateway(listen: [.init(host: "127.0.0.1", port: 0, webSocketPath: "/gw")], configure)
    }

    func testLoadAndPingpongOverWebSocketAreEchoedAndChecked() throws {
        let g = try gateway()
        for (mode, size, count) in [(ClientMode.load, 512, 2000), (.pingpong, 0, 50), (.load, 300_000, 40)] {
            let report = ClientRun.run(testSettings(port: g.port) {
                $0.transport = .ws
                $0.mode = mode
                $0.size = size
                $0.conns = mode == .pingpong ? 1 : 4
                $0.count = UInt64(count)
            })
            XCTAssertEqual(report.messages, [], "\(mode) size \(size)")
            XCTAssertEqual(report.replies, UInt64(count), "\(mode) size \(size)")
            XCTAssertEqual(report.exitCode, 0)
        }
        XCTAssertEqual(g.stats().closes(.webSocket), 0)
    }

    func testAWebSocketClientOnAPlainListenerFailsToConnect() throws {
        var config = GatewayConfig()
        config.port = 0
        let g = try Gateway(config: config, handler: EchoHandler(), logger: ServerMode.makeLogger())
        try g.start()
        running.append(g)
        let report = ClientRun.run(testSettings(port: g.port) {
            $0.transport = .ws
            $0.conns = 1
            $0.count = 1
        })
        XCTAssertEqual(report.exitCode, 1, "the upgrade request is not a frame: the gateway closes the connection")
        XCTAssertEqual(report.replies, 0)
    }
}
