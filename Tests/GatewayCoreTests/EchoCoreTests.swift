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

    private func startCore(failEvery: Int = 0) throws -> Int {
        var settings = CoreSettings()
        settings.port = 0
        settings.nodeID = 900
        settings.failEvery = failEvery
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

    private func hello(version: UInt16 = LinkMessage.version, role: NodeRole = .access, link: UInt16 = 3) -> [UInt8] {
        bytes(.hello(.init(version: version, role: role, node: 42, link: link, heartbeatMilliseconds: 1000)))
    }

    private func session(_ i: UInt32) -> SessionID {
        SessionID(node: 42, connection: ConnectionID(index: i, generation: 7))
    }

    private func link(_ port: Int) throws -> TestClient {
        let c = try TestClient(port: port)
        try c.send(hello())
        guard let answer = c.receiveFrame(), case .hello(let h) = decode(answer) else {
            throw XCTSkip("no HELLO answer")
        }
        XCTAssertEqual(h.status, 0)
        XCTAssertEqual(h.role, NodeRole.core.rawValue)
        XCTAssertEqual(h.node, 900)
        XCTAssertEqual(h.link, 3, "the link number is echoed")
        return c
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
