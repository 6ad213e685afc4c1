import XCTest
import Foundation
@_spi(Benchmarks) @testable import GatewayCore

/// Gateway.reconfigure, the engine's side of a reload: the upstream list, and the live timeouts.
final class ReconfigureEndToEndTests: ForwardingTestCase {
    /// Core A is replaced by core B while clients are connected: A's links close, B's come up, and
    /// every client is served by B without being closed. Adding A back again opens new positions.
    func testUpstreamListAppliesLive() throws {
        let (coreA, echoA) = try startCore()
        let (coreB, echoB) = try startCore()
        var config = GatewayConfig()
        let access = try startAccess(upstream: [coreA.port]) { config = $0 }
        waitFor("A's links up") { access.stats().linksUp == 2 }
        let clients = try (0..<6).map { _ in try TestClient(port: access.port) }
        for (i, c) in clients.enumerated() { XCTAssertTrue(pipelined(c, seqBase: UInt32(i * 100), count: 5)) }
        XCTAssertEqual(echoA.opened, 6)

        config.upstream = [GatewayConfig.Upstream(host: "127.0.0.1", port: coreB.port)]
        try access.reconfigure(config)
        waitFor("B's links up, A's gone") { coreB.stats().connectionsOpen == 2 && access.stats().linksUp == 2 && coreA.stats().connectionsOpen == 0 }
        XCTAssertEqual(access.stats().linksConfigured, 2)
        for (i, c) in clients.enumerated() {  // A's links closed under them: each told once
            XCTAssertEqual(c.framesBeforeHeartbeatEcho()?.filter(TestClient.isUpstreamLost).count, 1, "client \(i)")
        }
        for (i, c) in clients.enumerated() {
            XCTAssertTrue(pipelined(c, seqBase: UInt32(1000 + i * 100), count: 5), "client \(i) served by B")
        }
        XCTAssertEqual(echoB.opened, 6, "each client announced to B before its data")
        XCTAssertEqual(access.stats().closes.reduce(0, +), 0, "no client was closed")
        XCTAssertTrue(log.messages(atLeast: .notice).contains { $0.contains("removed from upstream") })

        config.upstream.append(GatewayConfig.Upstream(host: "127.0.0.1", port: coreA.port))
        try access.reconfigure(config)
        waitFor("both servers' links up") { access.stats().linksUp == 4 && coreA.stats().connectionsOpen == 2 }
        XCTAssertEqual(access.stats().linksConfigured, 4)
    }

    /// Forwarding cannot be switched on or off by a reload: refused, naming the key.
    func testSwitchingForwardingIsRefused() throws {
        let (core, _) = try startCore()
        var config = GatewayConfig()
        let access = try startAccess(upstream: [core.port]) { config = $0 }
        config.upstream = []
        XCTAssertThrowsError(try access.reconfigure(config)) { error in
            XCTAssertEqual((error as? ConfigError)?.key, "upstream")
        }
    }

    /// A shorter idle_timeout applies to the timers set after the reload.
    func testIdleTimeoutAppliesToTimersSetAfter() throws {
        var config = GatewayConfig()
        config.port = 0
        config.tickMilliseconds = 10
        config.idleTimeout = 600
        let gateway = try Gateway(config: config, logger: log.logger)
        try gateway.start()
        running.append(gateway)
        config.idleTimeout = 1
        try gateway.reconfigure(config)
        usleep(50_000)  // past a tick: Receive has taken it
        let client = try TestClient(port: gateway.port)
        XCTAssertTrue(client.echoes(TestClient.frame(seq: 1, bodySize: 4)))
        waitFor("closed idle after about a second") { gateway.stats().closes(.idle) == 1 }
    }
}
