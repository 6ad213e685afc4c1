import Foundation
import Glibc
import XCTest
@testable import GatewayCore

/// Tests/python/ws_conformance.py: a conformant client (the `websockets` package from PyPI,
/// installed by Tools/install-deps.sh) against a WebSocket listener, case by case: binary and
/// fragmented messages, ping/pong, close codes, an oversized message, origins, a text message,
/// an unmasked frame and a plain frame on the listener.
final class WebSocketPythonTests: XCTestCase {
    func testAConformantClientAgreesCaseByCase() throws {
        guard let python = TestProcess.onPath("python3") else { throw XCTSkip("python3 not found") }
        let root = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        for poller in [PollerKind.epoll, .poll] {
            let g = try startGateway(poller) { config in
                config.listen = [.init(host: "127.0.0.1", port: 0, webSocketPath: "/gw")]
                config.webSocketOrigins = ["https://app.example"]
                config.maxFrame = 4096
            }
            defer { g.stop() }
            let script = try TestProcess(python, [root.appendingPathComponent("Tests/python/ws_conformance.py").path,
                                                  "--port", "\(g.port)"], environment: nil, name: "ws_conformance")
            defer { script.kill() }
            // Each case has its own 20 s limit; thirteen of them bound the run.
            XCTAssertTrue(script.waitForExit(by: Date().addingTimeInterval(300)), "\(poller): still running")
            XCTAssertEqual(script.process.terminationStatus, 0, "\(poller):\n\(script.stdout)\n\(script.stderr)")
            XCTAssertTrue(script.stdout.contains("\n13 passed, 0 failed"), "\(poller):\n\(script.stdout)")
        }
    }

    /// The same cases on a wss:// listener (docs/TLS.md): WebSocket over TLS, the certificate verified.
    func testTheSameCasesOverTLS() throws {
        guard let python = TestProcess.onPath("python3") else { throw XCTSkip("python3 not found") }
        let fixtures = try TLSFixtures()
        let server = fixtures.pair("server")
        let root = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        for poller in [PollerKind.epoll, .poll] {
            let g = try startGateway(poller) { config in
                config.listen = [.init(host: "127.0.0.1", port: 0, webSocketPath: "/gw", tls: true)]
                config.tls.pairs = [TLSSettings.Pair(certificate: server.certificate, key: server.key)]
                config.webSocketOrigins = ["https://app.example"]
                config.maxFrame = 4096
            }
            defer { g.stop() }
            let script = try TestProcess(python, [root.appendingPathComponent("Tests/python/ws_conformance.py").path,
                                                  "--port", "\(g.port)", "--tls-ca", fixtures.path("ca.pem")],
                                         environment: nil, name: "ws_conformance")
            defer { script.kill() }
            XCTAssertTrue(script.waitForExit(by: Date().addingTimeInterval(300)), "\(poller): still running")
            XCTAssertEqual(script.process.terminationStatus, 0, "\(poller):\n\(script.stdout)\n\(script.stderr)")
            XCTAssertTrue(script.stdout.contains("\n13 passed, 0 failed"), "\(poller):\n\(script.stdout)")
            let stats = g.stats()
            XCTAssertGreaterThanOrEqual(stats.tlsHandshakes, 13, "\(poller): every case over TLS")
        }
    }
}
