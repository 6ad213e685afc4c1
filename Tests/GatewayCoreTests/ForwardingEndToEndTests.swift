import XCTest
@testable import BinTestKit
@_spi(Benchmarks) @testable import GatewayCore
import LinkCore

/// The access role end to end: clients -> gateway --upstream -> bin_test core,
/// under both pollers; every reply byte-checked on its own connection.
final class ForwardingEndToEndTests: XCTestCase {
    private var running: [Gateway] = []
    private let log = LogRecorder()

    override func tearDown() {
        for g in running.reversed() { g.stop() }
        running = []
    }

    private func startCore(port: Int = 0) throws -> (Gateway, EchoCore) {
        var settings = CoreSettings()
        settings.port = port
        let (g, c) = try CoreMode.start(settings, logger: log.logger)
        running.append(g)
        return (g, c)
    }

    private func startAccess(upstream ports: [Int], poller: PollerKind = .epoll) throws -> Gateway {
        var config = GatewayConfig()
        config.port = 0
        config.poller = poller
        config.maxConnections = 2000
        config.tickMilliseconds = 10
        config.linkRetryMaxMilliseconds = 200
        config.linkHeartbeatMilliseconds = 100
        config.nodeID = 77
        config.upstream = ports.map { GatewayConfig.Upstream(host: "127.0.0.1", port: $0) }
        let g = try Gateway(config: config, handler: EchoHandler(), logger: log.logger)
        try g.start()
        running.append(g)
        return g
    }

    private func waitFor(_ what: String, seconds: Double = 10, _ condition: () -> Bool) {
        let deadline = Date().addingTimeInterval(seconds)
        while !condition() && Date() < deadline { usleep(5_000) }
        XCTAssertTrue(condition(), what)
    }

    private func pipelined(_ client: TestClient, seqBase: UInt32, count: Int) -> Bool {
        var request: [UInt8] = []
        for n in 0..<count {
            request += TestClient.frame(seq: seqBase + UInt32(n), uid: seqBase, bodySize: (n * 53 + Int(seqBase)) % 900)
        }
        return client.exchange(request, expect: request.count) == request
    }

    func testClientsThroughAccessToCoreUnderBothPollers() throws {
        for poller in [PollerKind.epoll, .poll] {
            let (_, core) = try startCore()
            let corePort = running.last!.port
            let access = try startAccess(upstream: [corePort], poller: poller)
            waitFor("both links up (\(poller))") { access.stats().linksUp == 2 }
            let clients = try (0..<24).map { _ in try TestClient(port: access.port) }
            for round in 0..<3 {
                for (i, c) in clients.enumerated() {
                    XCTAssertTrue(pipelined(c, seqBase: UInt32(i * 1000 + round * 100), count: 40),
                                  "client \(i) round \(round) (\(poller))")
                }
            }
            XCTAssertEqual(core.opened, 24, "one OPENED per client: it stays on its link")
            let stats = access.stats()
            XCTAssertEqual(stats.forwardedUp, 24 * 3 * 40)
            XCTAssertEqual(stats.forwardedDown, 24 * 3 * 40)
            XCTAssertEqual(stats.staleDrops, 0)
            for c in clients { c.close() }
            waitFor("the core hears CLOSED once per client (\(poller))") { core.closed == 24 }
            usleep(50_000)
            XCTAssertEqual(core.closed, 24, "exactly once")
            tearDown()
        }
    }

    func testNoLinkUpAnswersAtOnceWithNoUpstream() throws {
        // A port nobody listens on: bind one, note it, close it.
        let (probe, _) = try startCore()
        let deadPort = probe.port
        probe.stop()
        running.removeAll()
        let access = try startAccess(upstream: [deadPort])
        let client = try TestClient(port: access.port)
        let request = TestClient.frame(seq: 5, cmd: 3, uid: 9, bodySize: 20)
        try client.send(request)
        let answer = try XCTUnwrap(client.receiveFrame())
        let header = answer.withUnsafeBytes { FrameHeader(decoding: $0.baseAddress!) }
        XCTAssertEqual(header.status, GatewayStatus.noUpstream)
        XCTAssertEqual(header.seq, 5)
        XCTAssertEqual(header.cmd, 3)
        XCTAssertEqual(header.uid, 9)
        XCTAssertEqual(answer.count, FrameHeader.size, "empty body")
        XCTAssertEqual(access.stats().noUpstreamReplies, 1)
        // A reserved command is answered by the gateway too; the heartbeat still echoes.
        let reserved = TestClient.frame(seq: 6, cmd: 0xFF22, bodySize: 0)
        try client.send(reserved)
        let r = try XCTUnwrap(client.receiveFrame())
        XCTAssertEqual(r.withUnsafeBytes { FrameHeader(decoding: $0.baseAddress!).status }, GatewayStatus.reservedCommand)
        XCTAssertTrue(client.echoes(TestClient.frame(seq: 7, cmd: ReservedCommand.heartbeat, bodySize: 0)))
        XCTAssertTrue(log.messages(atLeast: .warning).contains { $0.contains("down") }, "a link down is logged")
    }

    func testCoreRestartBringsServiceBackWithoutClosingClients() throws {
        let (core1, _) = try startCore()
        let corePort = core1.port
        let access = try startAccess(upstream: [corePort])
        waitFor("links up") { access.stats().linksUp == 2 }
        let clients = try (0..<8).map { _ in try TestClient(port: access.port) }
        for (i, c) in clients.enumerated() { XCTAssertTrue(pipelined(c, seqBase: UInt32(i * 10), count: 10)) }
        core1.stop()
        running.removeAll { $0 === core1 }
        waitFor("links down") { access.stats().linksUp == 0 }
        // While the core is down every request is answered at once with an error.
        let request = TestClient.frame(seq: 1, bodySize: 8)
        try clients[0].send(request)
        let answer = try XCTUnwrap(clients[0].receiveFrame())
        XCTAssertEqual(answer.withUnsafeBytes { FrameHeader(decoding: $0.baseAddress!).status }, GatewayStatus.noUpstream)
        let (_, core2) = try startCore(port: corePort)
        waitFor("links back within a few seconds") { access.stats().linksUp == 2 }
        for (i, c) in clients.enumerated() {
            XCTAssertTrue(pipelined(c, seqBase: UInt32(500 + i * 10), count: 10), "client \(i) served again")
        }
        XCTAssertEqual(core2.opened, 8, "the new core hears OPENED for every client before its data")
        XCTAssertEqual(access.stats().closes.reduce(0, +), 0, "no client was closed")
    }
}
