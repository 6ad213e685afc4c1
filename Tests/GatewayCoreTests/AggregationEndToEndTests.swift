import XCTest
import Foundation
import Glibc
import Synchronization
@testable import BinTestKit
@_spi(Benchmarks) @testable import GatewayCore

/// The aggregation role end to end: clients -> access -> aggregation (poll) -> core,
/// every reply byte-checked on its own connection, and the tiers failing in turn.
final class AggregationEndToEndTests: ForwardingTestCase {
    private func stopGateway(_ g: Gateway) {
        g.stop()
        running.removeAll { $0 === g }
    }

    /// Every client sends `rounds` pipelined bursts; all must come back whole.
    private func serve(_ clients: [TestClient], base: UInt32, rounds: Int = 1, count: Int = 20,
                       file: StaticString = #filePath, line: UInt = #line) {
        for round in 0..<rounds {
            for (i, c) in clients.enumerated() {
                let seq = base + UInt32(i * 1000 + round * 100)
                XCTAssertTrue(pipelined(c, seqBase: seq, count: count), "client \(i) round \(round)",
                              file: file, line: line)
            }
        }
    }

    func testThreeTiersUnderBothPollers() throws {
        for poller in [PollerKind.poll, .epoll] {
            let (coreGateway, core) = try startCore()
            let aggregation = try startAggregation(upstream: [coreGateway.port]) {
                $0.poller = poller
                $0.nodeID = 500
            }
            waitFor("aggregation's links up (\(poller))") { aggregation.stats().linksUp == 2 }
            let access = try startAccess(upstream: [aggregation.port]) {
                $0.poller = poller
                $0.nodeID = 77
            }
            waitFor("access links up (\(poller))") { access.stats().linksUp == 2 }
            XCTAssertEqual(aggregation.stats().downlinksUp, 2)
            let clients = try (0..<24).map { _ in try TestClient(port: access.port) }
            serve(clients, base: 0, rounds: 3, count: 40)
            XCTAssertEqual(core.opened, 24, "one OPENED per client, carried up unchanged")
            let (a, g) = (access.stats(), aggregation.stats())
            XCTAssertEqual(a.forwardedUp, 24 * 3 * 40)
            XCTAssertEqual(a.forwardedDown, 24 * 3 * 40)
            XCTAssertEqual(g.forwardedUp, 24 * 3 * 40, "the aggregation server carried every DATA up")
            XCTAssertEqual(g.forwardedDown, 24 * 3 * 40, "and every reply down")
            XCTAssertEqual(a.staleDrops + g.staleDrops, 0)
            XCTAssertEqual(a.closes.reduce(0, +) + g.closes.reduce(0, +), 0)
            for c in clients { c.close() }
            waitFor("the core hears CLOSED once per client (\(poller))") { core.closed == 24 }
            usleep(50_000)
            XCTAssertEqual(core.closed, 24, "exactly once")
            tearDown()
        }
    }

    /// Until its own link is up an aggregation server answers HELLO "not ready"; the
    /// access node keeps retrying (logged once), answers no_upstream meanwhile, and
    /// serves once the core is there.
    func testAggregationRefusesLinksUntilItsUpstreamIsUp() throws {
        let (probe, _) = try startCore()
        let corePort = probe.port
        stopGateway(probe)
        let aggregation = try startAggregation(upstream: [corePort])
        let access = try startAccess(upstream: [aggregation.port]) { $0.upstreamLinks = 1 }
        waitFor("refusals") { aggregation.stats().linksRefused >= 3 }
        XCTAssertEqual(access.stats().linksUp, 0)
        let refusedLines = log.messages(atLeast: .warning).filter { $0.contains("refused by node") }
        XCTAssertEqual(refusedLines.count, 1, "logged once per change, not per retry: \(log.messages(atLeast: .info))")
        XCTAssertTrue(refusedLines.first?.contains("notReady") == true, "\(refusedLines)")
        let client = try TestClient(port: access.port)
        try client.send(TestClient.frame(seq: 1, bodySize: 4))
        let answer = try XCTUnwrap(client.receiveFrame())
        XCTAssertEqual(answer.withUnsafeBytes { FrameHeader(decoding: $0.baseAddress!).status },
                       GatewayStatus.noUpstream)
        let (_, core) = try startCore(port: corePort)
        waitFor("all tiers up") { access.stats().linksUp == 1 }
        serve([client], base: 10)
        XCTAssertEqual(core.opened, 1)
    }

    /// An access node with two aggregation servers: one is killed, its clients move to
    /// the other (re-announced with OPENED), nobody is closed, every reply is right.
    func testTwoAggregationServersOneKilled() throws {
        let (coreGateway, core) = try startCore()
        let first = try startAggregation(upstream: [coreGateway.port])
        let second = try startAggregation(upstream: [coreGateway.port])
        waitFor("aggregation links up") { first.stats().linksUp == 2 && second.stats().linksUp == 2 }
        let access = try startAccess(upstream: [first.port, second.port])
        waitFor("four access links up") { access.stats().linksUp == 4 }
        let clients = try (0..<16).map { _ in try TestClient(port: access.port) }
        serve(clients, base: 0)
        XCTAssertEqual(core.opened, 16)
        XCTAssertGreaterThan(first.stats().forwardedUp, 0, "clients were spread over both servers")
        XCTAssertGreaterThan(second.stats().forwardedUp, 0, "clients were spread over both servers")
        stopGateway(first)
        waitFor("the first server's links down") { access.stats().linksUp == 2 }
        // The clients whose link died are each told once (upstream_lost), the others nothing.
        var told = 0
        for (i, c) in clients.enumerated() {
            let before = try XCTUnwrap(c.framesBeforeHeartbeatEcho(), "client \(i)")
            XCTAssertLessThanOrEqual(before.count, 1, "client \(i)")
            XCTAssertTrue(before.allSatisfy(TestClient.isUpstreamLost), "client \(i)")
            told += before.count
        }
        XCTAssertGreaterThan(told, 0, "some clients were on the first server's links")
        XCTAssertLessThan(told, clients.count, "some were on the second's")
        XCTAssertEqual(access.stats().upstreamLostNotices, UInt64(told))
        serve(clients, base: 50_000, rounds: 2)
        XCTAssertEqual(access.stats().closes.reduce(0, +), 0, "no client was closed")
        XCTAssertEqual(access.stats().noUpstreamReplies, 0, "a live link was always there")
        waitFor("the core dropped the first server's sessions") { core.closed == core.opened - 16 }
        XCTAssertGreaterThan(core.opened, 16, "the moved clients were announced again")
    }

    /// The aggregation server, then the core behind it, go down and come back, three
    /// times each: clients see errors while a tier is down, then service, and are never closed.
    func testLinkFlappingAtEveryTier() throws {
        var (coreGateway, _) = try startCore()
        let corePort = coreGateway.port
        var aggregation = try startAggregation(upstream: [corePort])
        let aggregationPort = aggregation.port
        let access = try startAccess(upstream: [aggregationPort])
        waitFor("links up") { access.stats().linksUp == 2 }
        let clients = try (0..<8).map { _ in try TestClient(port: access.port) }
        serve(clients, base: 0)
        for flap in 0..<6 {
            let core = flap % 2 == 1
            if core {
                stopGateway(coreGateway)
            } else {
                stopGateway(aggregation)
            }
            waitFor("access links down (flap \(flap))") { access.stats().linksUp == 0 }
            for (i, c) in clients.enumerated() {  // each had frames on a link that died: told once
                let before = c.framesBeforeHeartbeatEcho()
                XCTAssertEqual(before?.count, 1, "client \(i), flap \(flap)")
                XCTAssertTrue(before?.first.map(TestClient.isUpstreamLost) ?? false, "client \(i), flap \(flap)")
            }
            try clients[0].send(TestClient.frame(seq: 9, bodySize: 4))
            let answer = try XCTUnwrap(clients[0].receiveFrame())
            XCTAssertEqual(answer.withUnsafeBytes { FrameHeader(decoding: $0.baseAddress!).status },
                           GatewayStatus.noUpstream, "flap \(flap)")
            if core {
                coreGateway = try startCore(port: corePort).0
            } else {
                aggregation = try startAggregation(upstream: [corePort], port: aggregationPort)
            }
            waitFor("links back (flap \(flap))") { access.stats().linksUp == 2 }
            serve(clients, base: UInt32(10_000 * (flap + 1)))
        }
        XCTAssertEqual(access.stats().closes.reduce(0, +), 0, "no client was closed")
        XCTAssertEqual(access.stats().staleDrops, 0)
    }

    /// A slow core behind the aggregation tier: every ring on the way fills (4 entries),
    /// back-pressure reaches the clients, and every frame still arrives, in order, none lost.
    func testSlowCoreBackPressuresThroughTheAggregationTier() throws {
        let (coreGateway, _) = try startCore(delayMicroseconds: 300)
        let aggregation = try startAggregation(upstream: [coreGateway.port]) { $0.ringCapacity = 4 }
        waitFor("aggregation links up") { aggregation.stats().linksUp == 2 }
        let access = try startAccess(upstream: [aggregation.port]) {
            $0.ringCapacity = 4
            $0.maxQueueWait = 0
        }
        waitFor("access links up") { access.stats().linksUp == 2 }
        let clients = try (0..<6).map { _ in try TestClient(port: access.port) }
        let requests = (0..<clients.count).map { i in
            (0..<100).flatMap { TestClient.frame(seq: UInt32($0), uid: UInt32(i), bodySize: 5000) }
        }
        let results = Locked<[Int: Bool]>([:])
        let sockets = clients  // each thread uses its own client only
        DispatchQueue.concurrentPerform(iterations: clients.count) { i in
            let ok = sockets[i].exchange(requests[i], expect: requests[i].count, timeoutSeconds: 60) == requests[i]
            results.withLock { $0[i] = ok }
        }
        for i in 0..<clients.count { XCTAssertEqual(results.withLock { $0[i] }, true, "client \(i)") }
        XCTAssertEqual(aggregation.stats().forwardedDown, UInt64(clients.count * 100))
        withExtendedLifetime(clients) {  // release builds would close them at their last use, before this count
            XCTAssertEqual(access.stats().closes.reduce(0, +) + aggregation.stats().closes.reduce(0, +), 0)
        }
    }

    /// Thousands of sessions opened and closed through all three tiers while others echo.
    func testSlotReuseUnderChurnAcrossThreeTiers() throws {
        let (coreGateway, core) = try startCore()
        let aggregation = try startAggregation(upstream: [coreGateway.port])
        waitFor("aggregation links up") { aggregation.stats().linksUp == 2 }
        let access = try startAccess(upstream: [aggregation.port])
        waitFor("access links up") { access.stats().linksUp == 2 }
        let steady = try (0..<4).map { _ in try TestClient(port: access.port) }
        let cycles = 1200
        for n in 0..<cycles {
            let c = try TestClient(port: access.port)
            XCTAssertTrue(c.echoes(TestClient.frame(seq: UInt32(n), uid: UInt32(n), bodySize: n % 300)), "cycle \(n)")
            c.close()
            if n % 100 == 0 { serve(steady, base: UInt32(n * 10), count: 4) }
        }
        waitFor("every churned session closed at the core") { core.closed == cycles }
        XCTAssertEqual(core.opened, cycles + steady.count)
        XCTAssertEqual(access.stats().staleDrops + aggregation.stats().staleDrops, 0)
    }
}

/// An aggregation server against hand-made lower links: the checks a lower link's
/// messages go through, and what the core hears when a lower link goes.
final class AggregationLinkTests: ForwardingTestCase {
    private let heartbeat: UInt32 = 30_000

    private func hello(node: UInt32, link: UInt16, role: NodeRole = .access,
                       version: UInt16 = LinkMessage.version) -> [UInt8] {
        var h = LinkMessage.Hello(role: role, node: node, link: link, heartbeatMilliseconds: heartbeat)
        h.version = version
        return LinkMessage.hello(h).bytes
    }

    private func answer(_ link: TestClient) throws -> LinkMessage.Hello {
        let frame = try XCTUnwrap(link.receiveFrame(), "no HELLO answer")
        guard case .hello(let h) = try frame.withUnsafeBytes({
            try LinkMessage.decode($0.baseAddress!, maxFrame: 1 << 20).get()
        }) else { throw XCTSkip("not a HELLO") }
        return h
    }

    private func session(_ node: UInt32, _ index: UInt32) -> SessionID {
        SessionID(node: node, connection: ConnectionID(index: index, generation: 3))
    }

    private func opened(_ s: SessionID, link: UInt16) -> [UInt8] {
        LinkMessage.opened(s, link: link, peer: PeerAddress(ipv4: inet_addr("10.0.0.9"), port: 4000)).bytes
    }

    private func data(_ s: SessionID, _ frame: [UInt8]) -> [UInt8] {
        LinkMessage.data(s, clientFrameLength: UInt32(frame.count)).bytes + frame
    }

    private func tiers(delayMicroseconds: Int = 0) throws -> (Gateway, EchoCore) {
        let (coreGateway, core) = try startCore(delayMicroseconds: delayMicroseconds)
        let aggregation = try startAggregation(upstream: [coreGateway.port]) { $0.nodeID = 900 }
        waitFor("aggregation links up") { aggregation.stats().linksUp == 2 }
        return (aggregation, core)
    }

    /// Messages go up unchanged and come back to the link of their node; when the lower
    /// link closes, the core hears LINK_DOWN and ends exactly its sessions.
    func testLowerLinkClosingIsLinkDownAtTheCore() throws {
        let (aggregation, core) = try tiers()
        let link = try TestClient(port: aggregation.port)
        try link.send(hello(node: 5, link: 3))
        let h = try answer(link)
        XCTAssertEqual(h.status, LinkMessage.HelloStatus.accepted.rawValue)
        XCTAssertEqual(h.role, NodeRole.aggregation.rawValue)
        XCTAssertEqual(h.node, 900)
        XCTAssertEqual(h.link, 3)
        let other = try TestClient(port: aggregation.port)
        try other.send(hello(node: 6, link: 0))
        XCTAssertEqual(try answer(other).status, 0)
        let frames = (0..<3).map { TestClient.frame(seq: UInt32($0), bodySize: 10 * $0) }
        let sessions = [session(5, 1), session(5, 2)]
        var up: [UInt8] = []
        for s in sessions { up += opened(s, link: 3) }
        for s in sessions { for f in frames { up += data(s, f) } }
        up += LinkMessage.heartbeat.bytes
        try link.send(up)
        var expected: [[UInt8]] = sessions.flatMap { s in frames.map { data(s, $0) } }
        expected.append(LinkMessage.heartbeat.bytes)
        var received: [[UInt8]] = []
        for _ in expected { received.append(try XCTUnwrap(link.receiveFrame())) }
        XCTAssertEqual(Set(received), Set(expected), "every DATA echoed back to node 5's link, and the heartbeat")
        XCTAssertEqual(received.filter { $0 != LinkMessage.heartbeat.bytes }, expected.dropLast().map { $0 },
                       "in order")
        waitFor("the core holds two sessions") { core.opened == 2 }
        link.close()
        waitFor("LINK_DOWN ended node 5's sessions at the core") { core.closed == 2 }
        XCTAssertTrue(other.echoes(LinkMessage.heartbeat.bytes), "node 6's link is untouched")
        XCTAssertEqual(aggregation.stats().downlinksUp, 1)
    }

    /// A reply for a node whose link has gone is dropped and counted as stale.
    func testReplyForANodeWithNoLinkIsStale() throws {
        let (aggregation, core) = try tiers(delayMicroseconds: 200_000)
        let link = try TestClient(port: aggregation.port)
        try link.send(hello(node: 5, link: 0))
        XCTAssertEqual(try answer(link).status, 0)
        let s = session(5, 1)
        try link.send(opened(s, link: 0) + data(s, TestClient.frame(seq: 1, bodySize: 8)))
        waitFor("the core has the frame") { core.opened == 1 }
        link.close()
        waitFor("the late reply is dropped as stale") { aggregation.stats().staleDrops == 1 }
        XCTAssertEqual(aggregation.stats().forwardedDown, 0)
    }

    /// Bad lower links: each is answered or closed and counted; the others are untouched.
    func testBadLowerLinksAreRefusedOrClosed() throws {
        let (aggregation, _) = try tiers()
        let good = try TestClient(port: aggregation.port)
        try good.send(hello(node: 5, link: 0))
        XCTAssertEqual(try answer(good).status, 0)

        let early = try TestClient(port: aggregation.port)
        try early.send(LinkMessage.heartbeat.bytes)
        XCTAssertTrue(early.isClosedByPeer(), "anything before HELLO is malformed")

        let oldVersion = try TestClient(port: aggregation.port)
        try oldVersion.send(hello(node: 7, link: 0, version: 3))
        XCTAssertEqual(try answer(oldVersion).status, LinkMessage.HelloStatus.unsupportedVersion.rawValue)
        XCTAssertTrue(oldVersion.isClosedByPeer())

        let core = try TestClient(port: aggregation.port)
        try core.send(hello(node: 8, link: 0, role: .core))
        XCTAssertEqual(try answer(core).status, LinkMessage.HelloStatus.roleRefused.rawValue)
        XCTAssertTrue(core.isClosedByPeer())

        let spoof = try TestClient(port: aggregation.port)
        try spoof.send(hello(node: 9, link: 0))
        XCTAssertEqual(try answer(spoof).status, 0)
        try spoof.send(opened(session(5, 1), link: 0))
        XCTAssertTrue(spoof.isClosedByPeer(), "an access node speaks only for its own sessions")

        let client = try TestClient(port: aggregation.port)
        try client.send(TestClient.frame(seq: 1, bodySize: 10))
        XCTAssertTrue(client.isClosedByPeer(), "a client frame is not a link message")

        waitFor("counted") {
            let s = aggregation.stats()
            return s.linkMalformed == 3 && s.linksRefused == 2 && s.closes(.linkRefused) == 2
        }
        XCTAssertTrue(good.echoes(LinkMessage.heartbeat.bytes), "the good link is untouched")
        XCTAssertEqual(aggregation.stats().downlinksUp, 1)
    }
}
