import XCTest
@testable import BinTestKit
@_spi(Benchmarks) @testable import GatewayCore
import LinkCore

/// `bin_test core` (CoreServer + EchoCore on the engine) as a lower node sees
/// it over a raw socket: the HELLO exchange, echoed DATA byte for byte,
/// heartbeats, session counts, failures answered, and bad links closed alone.
final class EchoCoreTests: XCTestCase {
    private var gateway: Gateway?
    private var core: EchoCore?
    private let log = LogRecorder()

    override func tearDown() {
        gateway?.stop()
        gateway = nil
    }

    private func startCore(failEvery: Int = 0, delayMicroseconds: Int = 0, moveTimeout: UInt64 = 30_000) throws -> Int {
        var settings = CoreSettings()
        settings.port = 0
        settings.nodeID = 900
        settings.failEvery = failEvery
        settings.delayMicroseconds = delayMicroseconds
        settings.moveTimeoutMilliseconds = moveTimeout
        let (g, c) = try CoreMode.start(settings, logger: log.logger)
        (gateway, core) = (g, c)
        return g.port
    }

    private func bytes(_ m: LinkMessage, inner: [UInt8] = []) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: m.encodedLength)
        out.withUnsafeMutableBytes { m.encode(into: $0.baseAddress!) }
        return out + inner
    }

    private func decode(_ frame: [UInt8]) -> LinkMessage? {
        frame.withUnsafeBytes { try? LinkMessage.decode($0.baseAddress!, maxFrame: 1 << 20).get() }
    }

    private func hello(version: UInt16 = LinkMessage.version, role: NodeRole = .access, node: UInt32 = 42,
                       link: UInt16 = 3) -> [UInt8] {
        bytes(.hello(.init(version: version, role: role, node: node, link: link, heartbeatMilliseconds: 1000)))
    }

    private func session(_ i: UInt32) -> SessionID {
        SessionID(node: 42, connection: ConnectionID(index: i, generation: 7))
    }

    private func link(_ port: Int, node: UInt32 = 42, number: UInt16 = 3) throws -> TestClient {
        let c = try TestClient(port: port)
        try c.send(hello(node: node, link: number))
        guard let answer = c.receiveFrame(), case .hello(let h) = decode(answer) else {
            throw XCTSkip("no HELLO answer")
        }
        XCTAssertEqual(h.status, 0)
        XCTAssertEqual(h.role, NodeRole.core.rawValue)
        XCTAssertEqual(h.node, 900)
        XCTAssertEqual(h.link, number, "the link number is echoed")
        XCTAssertEqual(h.features, LinkMessage.Feature.moves, "the core answers MOVE")
        return c
    }

    /// MOVE end to end at the core (docs/LINK.md): MOVING is answered after the answers the core still
    /// holds for the session (--delay-us), in order on its link; once answered, the old link's close does not
    /// end it; MOVED on another node's link re-homes it (no CLOSED, no second OPENED) and its DATA is echoed
    /// there; MOVED for a session the core does not hold opens it.
    func testMovingIsAnsweredAfterPendingAnswersAndMovedKeepsTheSession() throws {
        let port = try startCore(delayMicroseconds: 50_000)
        let old = try link(port)
        let peer = PeerAddress(ipv4: 0x0100_007F, port: 5000)
        var stream: [UInt8] = []
        for i in 1...3 as ClosedRange<UInt32> { stream += bytes(.opened(session(i), link: 3, peer: peer)) }
        var expected: [UInt8] = []
        for n in 0..<20 {
            let client = TestClient.frame(seq: UInt32(n), bodySize: 16)
            let data = bytes(.data(session(1), clientFrameLength: UInt32(client.count)), inner: client)
            stream += data
            expected += data
        }
        stream += move(session(1), .moving) + move(session(2), .moving)
        expected += ready(session(1)) + ready(session(2))
        XCTAssertEqual(old.exchange(stream, expect: expected.count), expected,
                       "the 20 answers held at the core, then MOVE ready for each")
        old.close()
        // Session 3 ends with the link; 1 and 2, answered MOVING, are in transit and do not.
        waitFor("the old link's close is applied") { core?.closed == 1 }
        let successor = try link(port, node: 43, number: 0)
        try successor.send(move(session(1), .moved) + move(session(9), .moved))
        let client = TestClient.frame(seq: 99, bodySize: 8)
        let data = bytes(.data(session(1), clientFrameLength: UInt32(client.count)), inner: client)
        XCTAssertEqual(successor.exchange(data, expect: data.count), data, "session 1 answers on its new link")
        let server = try XCTUnwrap(core?.server)
        XCTAssertEqual(core?.moved, 1)
        XCTAssertEqual(core?.movingAsked, 2)
        XCTAssertEqual(server.movedIn, 1)
        XCTAssertEqual(server.movedUnknown, 1, "session 9 was not held: opened")
        XCTAssertEqual(server.movesAnswered, 2)
        XCTAssertEqual(core?.opened, 4, "1, 2, 3, then 9: no second OPENED for 1")
        XCTAssertEqual(core?.closed, 1, "no CLOSED for a moved session")
        successor.close()
        waitFor("sessions 1 and 9 end with their new link") { core?.closed == 3 }
        XCTAssertEqual(server.movesLost, 0, "session 2 is still in transit")
    }

    /// A session answered MOVING whose MOVED never comes (its new process died) ends at the move
    /// timeout, counted lost and logged.
    func testASessionNeverMovedEndsAtTheMoveTimeout() throws {
        let port = try startCore(moveTimeout: 200)
        let c = try link(port)
        let s = session(5)
        XCTAssertEqual(c.exchange(bytes(.opened(s, link: 3, peer: PeerAddress(ipv4: 0x0100_007F, port: 1)))
                                  + move(s, .moving), expect: 54), ready(s))
        let server = try XCTUnwrap(core?.server)
        waitFor("ended at the move timeout") { server.movesLost == 1 && core?.closed == 1 }
        let warnings = log.messages(atLeast: .warning)
        XCTAssertTrue(warnings.contains { $0.contains("ended while moving") }, "\(warnings)")
        XCTAssertTrue(c.echoes(bytes(.heartbeat)), "the link itself is unharmed")
    }

    private func move(_ s: SessionID, _ kind: LinkMessage.MoveKind, link: UInt16 = 0) -> [UInt8] {
        bytes(.move(s, kind, link: link, peer: PeerAddress(ipv4: 0x0100_007F, port: 5000), transport: 0))
    }

    private func ready(_ s: SessionID) -> [UInt8] {
        bytes(.move(s, .ready, link: 0, peer: PeerAddress(family: 0, port: 0, bytes: (0, 0)), transport: 0))
    }

    private func waitFor(_ what: String, _ condition: () -> Bool) {
        let deadline = Date().addingTimeInterval(10)
        while !condition() && Date() < deadline { usleep(5_000) }
        XCTAssertTrue(condition(), what)
    }

    func testDataIsEchoedPerSessionAndSessionsAreCounted() throws {
        let port = try startCore()
        let c = try link(port)
        let beat = bytes(.heartbeat)
        XCTAssertTrue(c.echoes(beat), "HEARTBEAT answered with the identical frame")
        var stream: [UInt8] = []
        var expected: [UInt8] = []
        for i in 0..<10 as Range<UInt32> {
            stream += bytes(.opened(session(i), link: 3, peer: PeerAddress(ipv4: 0x0100_007F, port: 5000 + UInt16(i))))
        }
        for n in 0..<200 {
            let s = session(UInt32(n % 10))
            let client = TestClient.frame(seq: UInt32(n), bodySize: (n * 37) % 700)
            let data = bytes(.data(s, clientFrameLength: UInt32(client.count)), inner: client)
            stream += data
            expected += data
        }
        let got = c.exchange(stream, expect: expected.count)
        XCTAssertEqual(got, expected, "every DATA comes back identical and in order")
        // Sessions 0-4 close, 5-9 go with LINK_DOWN of their node and link number.
        var ends: [UInt8] = []
        for i in 0..<5 as Range<UInt32> { ends += bytes(.closed(session(i), cause: 0)) }
        ends += bytes(.linkDown(node: 42, link: 3))
        try c.send(ends)
        XCTAssertTrue(c.echoes(beat))
        XCTAssertEqual(core?.opened, 10)
        XCTAssertEqual(core?.closed, 10)
        XCTAssertEqual(core?.dataFrames.load(ordering: .relaxed), 200)
        // DATA for a session that is gone is dropped, not echoed.
        let stale = TestClient.frame(seq: 1, bodySize: 4)
        try c.send(bytes(.data(session(0), clientFrameLength: UInt32(stale.count)), inner: stale))
        XCTAssertTrue(c.echoes(beat), "the next answer is the heartbeat's: the stale DATA was dropped")
    }

    func testEveryNthAnswerFailsWithTheApplicationStatus() throws {
        let port = try startCore(failEvery: 3)
        let c = try link(port)
        try c.send(bytes(.opened(session(1), link: 3, peer: PeerAddress(ipv4: 0, port: 1))))
        for n in 1...6 as ClosedRange<UInt32> {
            let client = TestClient.frame(seq: n, bodySize: 8)
            let data = bytes(.data(session(1), clientFrameLength: UInt32(client.count)), inner: client)
            try c.send(data)
            let answer = try XCTUnwrap(c.receiveFrame())
            if n % 3 == 0 {
                guard case .data(let s, let length) = decode(answer) else { return XCTFail("not DATA") }
                XCTAssertEqual(s, session(1))
                XCTAssertEqual(Int(length), FrameHeader.size, "empty body")
                let header = answer.withUnsafeBytes { FrameHeader(decoding: $0.baseAddress! + 30) }
                XCTAssertEqual(header.status, EchoCore.failureStatus)
                XCTAssertEqual(header.seq, n)
            } else {
                XCTAssertEqual(answer, data)
            }
        }
    }

    func testBadVersionAndMalformedFramesCloseOnlyThatLink() throws {
        let port = try startCore()
        let good = try link(port)
        let old = try TestClient(port: port)
        try old.send(hello(version: 3))
        let answer = try XCTUnwrap(old.receiveFrame())
        guard case .hello(let h) = decode(answer) else { return XCTFail("no HELLO answer") }
        XCTAssertEqual(h.status, LinkMessage.HelloStatus.unsupportedVersion.rawValue)
        XCTAssertTrue(old.isClosedByPeer())
        XCTAssertTrue(log.messages(atLeast: .warning).contains { $0.contains("unsupportedVersion") && $0.contains("version 3") },
                      "a version mismatch is logged clearly")

        let early = try TestClient(port: port)
        try early.send(bytes(.heartbeat))
        XCTAssertTrue(early.isClosedByPeer(), "anything before HELLO closes the link")

        let bad = try link(port)
        var data = bytes(.data(session(1), clientFrameLength: 18), inner: TestClient.frame(seq: 1, bodySize: 0))
        data[33] = 19  // inner length disagrees with the outer one
        try bad.send(data)
        XCTAssertTrue(bad.isClosedByPeer())

        let unknown = try link(port)
        var frame = bytes(.heartbeat)
        frame[9] = 0x1F
        try unknown.send(frame)
        XCTAssertTrue(unknown.isClosedByPeer())

        XCTAssertTrue(good.echoes(bytes(.heartbeat)), "the other link is untouched")
        let core = try XCTUnwrap(gateway)
        waitFor("closes counted") { core.stats().closes(.handler) >= 4 }
    }
}
