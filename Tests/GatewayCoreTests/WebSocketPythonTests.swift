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
        guard let python = EchoCorePythonTests.findExecutable("python3") else { throw XCTSkip("python3 not found") }
        for poller in [PollerKind.epoll, .poll] {
            let g = try startGateway(poller) { config in
                config.listen = [.init(host: "127.0.0.1", port: 0, webSocketPath: "/gw")]
                config.webSocketOrigins = ["https://app.example"]
                config.maxFrame = 4096
            }
            defer { g.stop() }
            let root = URL(fileURLWithPath: #filePath)
                .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            let p = Process()
            p.executableURL = python
            p.arguments = [root.appendingPathComponent("Tests/python/ws_conformance.py").path, "--port", "\(g.port)"]
            let pipe = Pipe()
            p.standardOutput = pipe
            try p.run()
            let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
            p.waitUntilExit()
            XCTAssertEqual(p.terminationStatus, 0, "\(poller):\n\(output)")
            XCTAssertTrue(output.contains("\n12 passed, 0 failed"), "\(poller):\n\(output)")
        }
    }
}
