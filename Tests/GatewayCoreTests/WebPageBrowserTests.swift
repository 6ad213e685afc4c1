import Foundation
import Glibc
import XCTest
@testable import GatewayCore

/// examples/web/index.html in Debian's chromium, headless (Tests/python/web_page_test.py drives it
/// over the DevTools protocol): two browser sessions log in through a WebSocket listener and
/// examples/echo_core.py; a line one sends to the room reaches the other, and a push to one user
/// reaches that user alone. The same over wss:// (WebSocket over TLS, a test certificate the browser is
/// told to accept).
final class WebPageBrowserTests: XCTestCase {
    func testTwoBrowserSessionsChatThroughTheGatewayAndTheExampleCore() throws {
        try chat(secure: false)
    }

    func testTheSameOverWSS() throws {
        try chat(secure: true)
    }

    private func chat(secure: Bool) throws {
        guard let python = TestProcess.onPath("python3") else { throw XCTSkip("python3 not found") }
        guard TestProcess.onPath("chromium") != nil else {
            throw XCTSkip("chromium not found: Tools/install-deps.sh installs it")
        }
        let root = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let core = try TestProcess(python, [root.appendingPathComponent("examples/echo_core.py").path,
                                            "--host", "127.0.0.1", "--port", "0"], environment: nil, name: "echo_core")
        defer { core.stop(seconds: 5) }
        let coreLine = try XCTUnwrap(core.readLine(timeout: 15), "echo_core.py printed no listening line")
        let corePort = try XCTUnwrap(Int(coreLine.split(separator: ":").last ?? ""), coreLine)

        // The page's server comes first: its port is the origin the gateway allows.
        let portFile = FileManager.default.temporaryDirectory.appendingPathComponent("ws-port-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: portFile) }
        let page = try TestProcess(python, [root.appendingPathComponent("Tests/python/web_page_test.py").path,
                                            "--ws-port-file", portFile.path] + (secure ? ["--wss"] : []),
                                   environment: nil, name: "web_page_test")
        let fixtures = secure ? try TLSFixtures() : nil
        defer { page.kill() }
        let pageLine = try XCTUnwrap(page.readLine(timeout: 15), "no http port line: \(page.stderr)")
        let httpPort = try XCTUnwrap(Int(pageLine.split(separator: " ").last ?? ""), pageLine)

        let gateway = try startGateway(.epoll) { config in
            config.listen = [.init(host: "127.0.0.1", port: 0, webSocketPath: "/gw", tls: secure)]
            if let server = fixtures?.pair("server") {
                config.tls.pairs = [TLSSettings.Pair(certificate: server.certificate, key: server.key)]
            }
            config.webSocketOrigins = ["http://127.0.0.1:\(httpPort)"]
            config.upstream = [.init(host: "127.0.0.1", port: corePort)]
            config.tickMilliseconds = 10
        }
        defer { gateway.stop() }
        XCTAssertTrue(waitUntil(seconds: 10) { gateway.stats().linksUp == 2 }, "links up")
        try Data("\(gateway.port)\n".utf8).write(to: portFile)

        // The script bounds itself (four minutes for the browser part).
        XCTAssertTrue(page.waitForExit(by: Date().addingTimeInterval(330)), "still running:\n\(page.stdout)")
        XCTAssertEqual(page.process.terminationStatus, 0, "\(page.stdout)\n\(page.stderr)")
        XCTAssertTrue(page.stdout.contains("\n4 passed, 0 failed"), page.stdout)
        if secure { XCTAssertGreaterThanOrEqual(gateway.stats().tlsHandshakes, 2, "both sessions over TLS") }
    }
}
