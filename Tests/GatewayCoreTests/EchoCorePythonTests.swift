import Foundation
import Glibc
import Logging
import XCTest
@_spi(Benchmarks) @testable import GatewayCore

/// Runs examples/echo_core.py (an echo core written from docs/LINK.md alone) and speaks
/// the link protocol to it with the Swift codec, so the spec, the codec and the example agree.
/// Every socket read has a timeout (TestClient sets SO_RCVTIMEO) and the process is always
/// stopped in tearDown, so a broken script fails the test instead of hanging it.
final class EchoCorePythonTests: XCTestCase {
    private var core: TestProcess?
    private var port = 0
    private let maxFrame = 1 << 20
    private let heartbeatMs: UInt32 = 30_000  // long: the core must never time a test link out

    override func setUpWithError() throws {
        try super.setUpWithError()
        guard let python = TestProcess.onPath("python3") else { throw XCTSkip("python3 not found") }
        let root = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let core = try TestProcess(python, [root.appendingPathComponent("examples/echo_core.py").path,
                                            "--host", "127.0.0.1", "--port", "0"], environment: nil, name: "echo_core")
        self.core = core
        let line = try XCTUnwrap(core.readLine(timeout: 15), "echo_core.py printed no listening line: \(core.stderr)")
        let prefix = "echo_core listening on 127.0.0.1:"
        XCTAssertTrue(line.hasPrefix(prefix), line)
        port = try XCTUnwrap(Int(line.dropFirst(prefix.count)), line)
        XCTAssertGreaterThan(port, 0)
    }

    override func tearDown() {
        core?.stop(seconds: 5)
        core = nil
        super.tearDown()
    }

    // MARK: - Tests

    func testHelloIsAnsweredAndHeartbeatEchoed() throws {
        let link = try openLink(node: 7, link: 5)
        let heartbeat = LinkMessage.heartbeat.bytes
        XCTAssertTrue(link.echoes(heartbeat))
        XCTAssertTrue(link.echoes(heartbeat), "every heartbeat is answered, not just the first")
    }

    func testDataIsEchoedByteForByteInOrderPerSession() throws {
        let link = try openLink(node: 7, link: 0)
        let sessions = (0..<10).map { session(node: 7, UInt32($0)) }
        try link.send(sessions.flatMap { opened($0, link: 0) })

        // 200 DATA frames, 20 per session, interleaved, with bodies from empty to 70 KB.
        var random = TestRandom(seed: 42)
        let sizes = [0, 1, 17, 100, 1000, 4096, 20_000, 70_000]
        var sent: [SessionID: [[UInt8]]] = [:]
        var stream: [UInt8] = []
        for n in 0..<200 {
            let s = sessions[n % sessions.count]
            let client = TestClient.frame(seq: UInt32(n), cmd: UInt16(1 + n % 5), uid: UInt32(n % 10),
                                          bodySize: sizes[random.below(sizes.count)])
            let frame = data(s, client)
            sent[s, default: []].append(frame)
            stream += frame
        }
        // One coalesced buffer, sent in writes as big as the socket takes while the replies are read.
        let reply = try XCTUnwrap(link.exchange(stream, expect: stream.count, timeoutSeconds: 30),
                                  "the echoes of 200 DATA frames did not all come back")
        var received: [SessionID: [[UInt8]]] = [:]
        for frame in try cut(reply) {
            guard case .data(let s, let inner)? = decode(frame) else { return XCTFail("not a DATA reply") }
            XCTAssertEqual(Int(inner), frame.count - LinkMessage.dataOverhead)
            received[s, default: []].append(frame)
        }
        XCTAssertEqual(received.count, sessions.count)
        for s in sessions { XCTAssertTrue(received[s] == sent[s], "session \(s): replies differ or out of order") }

        // A few frames written one byte at a time: framing must not depend on read boundaries.
        for i in 0..<3 {
            let frame = data(sessions[i], TestClient.frame(seq: UInt32(1000 + i), bodySize: 40 + i))
            for byte in frame { try link.send([byte]) }
            XCTAssertEqual(link.receiveFrame(), frame, "byte-at-a-time DATA \(i)")
        }
    }

    func testUnsupportedVersionAndCoreRoleAreRefusedAndClosed() throws {
        for (version, role, status) in [(UInt16(3), NodeRole.access, UInt32(1)), (LinkMessage.version, .core, 2)] {
            let link = try TestClient(port: port)
            try link.send(hello(version: version, role: role, node: 7, link: 3))
            let answer = try XCTUnwrap(link.receiveFrame(), "no HELLO answer to version \(version) role \(role)")
            XCTAssertEqual(decode(answer), .hello(LinkMessage.Hello(
                status: status, role: .core, node: 1, link: 3, heartbeatMilliseconds: heartbeatMs,
                maxFrame: UInt32(maxFrame), features: LinkMessage.Feature.moves)))
            XCTAssertTrue(link.isClosedByPeer(), "link not closed after refusing version \(version) role \(role)")
        }
    }

    func testMalformedFrameClosesThatLinkOnly() throws {
        let good = try openLink(node: 8, link: 0)
        let s = session(node: 8, 1)
        try good.send(opened(s, link: 0))
        let probe = data(s, TestClient.frame(seq: 1, bodySize: 10))
        XCTAssertTrue(good.echoes(probe))

        var wrongInner = data(s, TestClient.frame(seq: 2, bodySize: 10))
        withUnsafeBytes(of: UInt32(29).bigEndian) { wrongInner.replaceSubrange(30..<34, with: $0) }
        var longHello = hello(node: 9, link: 0) + [0]
        withUnsafeBytes(of: UInt32(33).bigEndian) { longHello.replaceSubrange(0..<4, with: $0) }
        let cases: [(name: String, bytes: [UInt8], afterHello: Bool)] = [
            ("length 17", TestClient.rawHeader(length: 17), true),
            ("DATA with a wrong inner length", wrongInner, true),
            ("length above max_frame + 38", TestClient.rawHeader(length: UInt32(maxFrame + 39)), true),
            ("unknown command 0xFF16", TestClient.frame(seq: 0, cmd: 0xFF16, uid: 0, bodySize: 0), true),
            ("HEARTBEAT before HELLO", LinkMessage.heartbeat.bytes, false),
            ("HELLO of length 33", longHello, false),
        ]
        for c in cases {
            let bad = c.afterHello ? try openLink(node: 9, link: 0) : try TestClient(port: port)
            try bad.send(c.bytes)
            XCTAssertTrue(bad.isClosedByPeer(), "link not closed after \(c.name)")
            XCTAssertTrue(good.echoes(probe), "the other link stopped working after \(c.name)")
        }
    }

    /// The same end-to-end run as the Swift core's: clients through an access gateway to the
    /// script, directly and through an aggregation server; every reply byte-checked.
    func testClientsThroughTheTiersToThePythonCore() throws {
        var gateways: [Gateway] = []
        defer { for g in gateways.reversed() { g.stop() } }
        func start(_ role: GatewayRole, upstream: Int) throws -> Gateway {
            var config = GatewayConfig()
            config.port = 0
            config.role = role
            config.poller = role == .aggregation ? .poll : .epoll
            config.tickMilliseconds = 10
            config.upstream = [GatewayConfig.Upstream(host: "127.0.0.1", port: upstream)]
            let g = try Gateway(config: config, handler: EchoHandler(), logger: Logger(label: "python-tiers"))
            try g.start()
            gateways.append(g)
            XCTAssertTrue(waitUntil(seconds: 10) { g.stats().linksUp == 2 }, "\(role) links up")
            return g
        }
        let aggregation = try start(.aggregation, upstream: port)
        for access in [try start(.access, upstream: port), try start(.access, upstream: aggregation.port)] {
            let clients = try (0..<8).map { _ in try TestClient(port: access.port) }
            for (i, c) in clients.enumerated() {
                var request: [UInt8] = []
                for n in 0..<30 {
                    request += TestClient.frame(seq: UInt32(n), uid: UInt32(i), bodySize: (n * 37) % 700)
                }
                XCTAssertEqual(c.exchange(request, expect: request.count), request, "client \(i)")
            }
            // The counter may lag the last reply's delivery by a moment.
            XCTAssertTrue(waitUntil { access.stats().forwardedDown == 8 * 30 },
                          "forwardedDown \(access.stats().forwardedDown), expected \(8 * 30)")
            XCTAssertEqual(access.stats().staleDrops, 0)
        }
        XCTAssertEqual(aggregation.stats().forwardedUp, 8 * 30)
    }

    /// Binding and push as the script's docstring shows them (the client commands of PushCore):
    /// clients LOGIN through an access gateway with two links to the script; a PUSH to a uid
    /// reaches each of its sessions once, though the script sends it on both links; KICK closes them.
    func testBindingAndPushThroughAGateway() throws {
        var config = GatewayConfig()
        config.port = 0
        config.role = .access
        config.tickMilliseconds = 10
        config.upstream = [GatewayConfig.Upstream(host: "127.0.0.1", port: port)]
        let gateway = try Gateway(config: config, handler: EchoHandler(), logger: Logger(label: "python-push"))
        try gateway.start()
        defer { gateway.stop() }
        XCTAssertTrue(waitUntil(seconds: 10) { gateway.stats().linksUp == 2 }, "access links up")

        var seq: UInt32 = 0
        func request(_ client: TestClient, _ cmd: UInt16, _ body: [UInt8], _ what: String) {
            seq += 1
            XCTAssertTrue(client.echoes(PushCore.request(cmd, seq: seq, body)), "\(what): echoed after acting")
        }
        let devices = try (0..<2).map { _ in try TestClient(port: gateway.port) }  // uid 42
        let other = try TestClient(port: gateway.port)  // uid 43
        for (i, d) in devices.enumerated() { request(d, 10, PushCore.u32(42), "device \(i) LOGIN 42") }
        request(other, 10, PushCore.u32(43), "LOGIN 43")
        XCTAssertTrue(waitUntil { gateway.stats().sessionsBound == 3 }, "3 sessions bound")

        let payload = Array("hello".utf8)
        request(other, 20, PushCore.scoped(.uid, 42, payload), "PUSH to uid 42")
        for (i, d) in devices.enumerated() {
            guard let frame = d.receiveFrame() else { XCTFail("device \(i): no push"); continue }
            let header = frame.withUnsafeBytes { FrameHeader(decoding: $0.baseAddress!) }
            XCTAssertEqual(header.cmd, PushCore.pushedCmd, "device \(i)")
            XCTAssertEqual(header.seq, seq, "device \(i): the PUSH request's seq")
            XCTAssertEqual(header.uid, 42, "device \(i)")
            XCTAssertEqual(Array(frame[FrameHeader.size...]), payload, "device \(i)")
        }
        // Both copies have been handled once the gateway counts the second as a duplicate.
        XCTAssertTrue(waitUntil(seconds: 10) { gateway.stats().duplicates >= 1 },
                      "the script sent the PUSH on both links: one copy dropped, counted")
        for (i, d) in devices.enumerated() { XCTAssertTrue(d.hasNoPush(), "device \(i): exactly once") }
        XCTAssertTrue(other.hasNoPush(), "uid 43 got only its echo")
        XCTAssertTrue(waitUntil { gateway.stats().pushDeliveries >= 2 }, "deliveries counted")
        XCTAssertEqual(gateway.stats().pushDeliveries, 2, "one per uid-42 session, not per copy")

        request(other, 21, PushCore.scoped(.uid, 42), "KICK uid 42")
        for (i, d) in devices.enumerated() {
            XCTAssertTrue(d.isClosedByPeer(), "device \(i) kicked")
            d.close()  // our side closed too: the gateway counts the close now, not ~2 s later
        }
        XCTAssertTrue(waitUntil { gateway.stats().closes(.kicked) == 2 }, "2 kicked closes counted")
        XCTAssertTrue(other.hasNoPush(), "uid 43 is still served")
        XCTAssertEqual(gateway.stats().sessionsBound, 1, "the kicked sessions were unbound")
    }

    func testSummaryOnSigtermCountsSessionsAndData() throws {
        // A: an access node's link with 6 sessions; 2 get CLOSED.
        let a = try openLink(node: 7, link: 0)
        let aSessions = (0..<6).map { session(node: 7, UInt32($0)) }
        try a.send(aSessions.flatMap { opened($0, link: 0) })
        // B: an aggregation server's link carrying node 8 link 1 (4 sessions, ended by LINK_DOWN),
        // node 8 link 2 and node 9 link 1 (which LINK_DOWN of node 8 link 1 must leave alone).
        let b = try openLink(node: 20, link: 0, role: .aggregation)
        let down = (0..<4).map { session(node: 8, UInt32($0)) }
        let kept = [(session(node: 8, 10), UInt16(2)), (session(node: 9, 0), 1), (session(node: 9, 1), 1)]
        try b.send(down.flatMap { opened($0, link: 1) } + kept.flatMap { opened($0.0, link: $0.1) })
        // C: 2 sessions on a link that then closes for a malformed frame.
        let c = try openLink(node: 30, link: 0)
        let cSessions = (0..<2).map { session(node: 30, UInt32($0)) }
        try c.send(cSessions.flatMap { opened($0, link: 0) })

        var dataSent = 0
        for (link, sessions) in [(a, aSessions), (b, down + kept.map { $0.0 }), (c, cSessions)] {
            let frames = sessions.flatMap { s in (0..<3).flatMap { data(s, TestClient.frame(seq: $0, bodySize: 50)) } }
            XCTAssertEqual(link.exchange(frames, expect: frames.count), frames)
            dataSent += sessions.count * 3
        }

        try a.send(LinkMessage.closed(aSessions[0], cause: 0).bytes + LinkMessage.closed(aSessions[1], cause: 1).bytes)
        try a.send(LinkMessage.closed(session(node: 7, 99), cause: 0).bytes)  // unknown: dropped, not counted
        try a.send(data(aSessions[0], TestClient.frame(seq: 9, bodySize: 5)))  // closed session: dropped
        try b.send(LinkMessage.linkDown(node: 8, link: 1).bytes)
        // Each link is handled in order, so a heartbeat's echo means everything before it was handled.
        XCTAssertTrue(a.echoes(LinkMessage.heartbeat.bytes), "expected the heartbeat echo, not the dropped DATA")
        XCTAssertTrue(b.echoes(LinkMessage.heartbeat.bytes))
        XCTAssertTrue(b.echoes(data(kept[0].0, TestClient.frame(seq: 5, bodySize: 3))), "a kept session works")
        dataSent += 1
        try c.send(TestClient.rawHeader(length: 17))
        XCTAssertTrue(c.isClosedByPeer())  // the core forgets C's sessions before it closes the socket

        let core = try XCTUnwrap(core)
        let p = core.process
        kill(p.processIdentifier, SIGTERM)
        let openedCount = aSessions.count + down.count + kept.count + cSessions.count
        let closedCount = 2 + down.count + cSessions.count
        XCTAssertEqual(core.readLine(timeout: 10),
                       "opened=\(openedCount) closed=\(closedCount) data=\(dataSent) moved=0")
        XCTAssertTrue(waitUntil(seconds: 10) { !p.isRunning }, "echo_core.py did not exit on SIGTERM")
        if !p.isRunning {
            XCTAssertEqual(p.terminationReason, .exit)
            XCTAssertEqual(p.terminationStatus, 0)
        }
    }

    /// MOVE (docs/LINK.md): HELLO offers it; MOVING is answered at once with MOVE ready; MOVED on another
    /// node's link keeps the session (counted moved, not opened) and its DATA is echoed there; MOVED for a
    /// session the core does not hold opens it; a kind that only goes down is malformed.
    func testMoveKeepsASessionAcrossLinks() throws {
        let old = try openLink(node: 7, link: 0)
        let s1 = session(node: 7, 1)
        let none = PeerAddress(family: 0, port: 0, bytes: (0, 0))
        let ready = LinkMessage.move(s1, .ready, link: 0, peer: none, transport: 0).bytes
        let asked = opened(s1, link: 0) + LinkMessage.move(s1, .moving, link: 0, peer: none, transport: 0).bytes
        XCTAssertEqual(old.exchange(asked, expect: ready.count), ready)
        let successor = try openLink(node: 70, link: 1)
        let peer = PeerAddress(ipv4: 0x0100_007F, port: 4000)
        try successor.send(LinkMessage.move(s1, .moved, link: 1, peer: peer, transport: 0).bytes
                           + LinkMessage.move(session(node: 7, 9), .moved, link: 1, peer: peer, transport: 0).bytes)
        let frame = data(s1, TestClient.frame(seq: 3, bodySize: 11))
        XCTAssertEqual(successor.exchange(frame, expect: frame.count), frame, "s1 answers on its new link")
        try old.send(ready)  // READY only goes down
        XCTAssertTrue(old.isClosedByPeer())
        let core = try XCTUnwrap(core)
        kill(core.process.processIdentifier, SIGTERM)
        XCTAssertEqual(core.readLine(timeout: 10), "opened=2 closed=0 data=1 moved=1")
    }

    // MARK: - Helpers

    /// Connects a link and completes HELLO, checking the core's answer.
    private func openLink(node: UInt32, link: UInt16, role: NodeRole = .access,
                          file: StaticString = #filePath, line: UInt = #line) throws -> TestClient {
        let client = try TestClient(port: port)
        try client.send(hello(role: role, node: node, link: link))
        let answer = try XCTUnwrap(client.receiveFrame(), "no HELLO answer", file: file, line: line)
        XCTAssertEqual(decode(answer), .hello(LinkMessage.Hello(
            status: 0, role: .core, node: 1, link: link, heartbeatMilliseconds: heartbeatMs,
            features: LinkMessage.Feature.moves)), file: file, line: line)
        return client
    }

    private func session(node: UInt32, _ index: UInt32) -> SessionID {
        SessionID(node: node, connection: ConnectionID(index: index, generation: index &* 7 &+ 1))
    }

    private func hello(version: UInt16 = LinkMessage.version, role: NodeRole = .access,
                       node: UInt32, link: UInt16) -> [UInt8] {
        var h = LinkMessage.Hello(role: role, node: node, link: link, heartbeatMilliseconds: heartbeatMs)
        h.version = version
        return LinkMessage.hello(h).bytes
    }

    private func opened(_ s: SessionID, link: UInt16) -> [UInt8] {
        LinkMessage.opened(s, link: link, peer: PeerAddress(ipv4: inet_addr("10.1.2.3"), port: UInt16(40_000 + link))).bytes
    }

    private func data(_ s: SessionID, _ clientFrame: [UInt8]) -> [UInt8] {
        LinkMessage.data(s, clientFrameLength: UInt32(clientFrame.count)).bytes + clientFrame
    }

    private func decode(_ frame: [UInt8]) -> LinkMessage? {
        frame.withUnsafeBytes { try? LinkMessage.decode($0.baseAddress!, maxFrame: maxFrame).get() }
    }

    /// Splits a byte stream into whole frames by their length fields.
    private func cut(_ stream: [UInt8]) throws -> [[UInt8]] {
        var frames: [[UInt8]] = []
        var at = 0
        while at < stream.count {
            XCTAssertGreaterThanOrEqual(stream.count - at, FrameHeader.size)
            let length = Int(stream.withUnsafeBytes { FrameHeader.length(at: $0.baseAddress! + at) })
            guard length >= FrameHeader.size, at + length <= stream.count else {
                throw SocketError("cut: bad frame length \(length) at \(at)", 0)
            }
            frames.append(Array(stream[at..<(at + length)]))
            at += length
        }
        return frames
    }
}
