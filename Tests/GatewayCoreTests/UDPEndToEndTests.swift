import XCTest
import Glibc
@testable import BinTestKit
@testable import GatewayCore
import TestSupport

/// UDP listeners end to end (docs/UDP.md), under both pollers: echo through access and through
/// access + aggregation to a core, the idle timeout, the anti-amplification bound, an oversized
/// frame and garbage datagrams. Outcomes are arranged by construction: a client's datagrams reach
/// the gateway's socket in the order sent, and Monitor handles them in that order, so when the answer
/// to a later datagram is back, every earlier one has been counted.
final class UDPEndToEndTests: ForwardingTestCase {
    private static let pollers: [PollerKind] = [.epoll, .poll]

    /// A gateway with a TCP listener (unused) and a UDP one; returns it and the UDP port.
    private func startUDP(_ poller: PollerKind, handler: GatewayHandler = EchoHandler(),
                          _ configure: (inout GatewayConfig) -> Void = { _ in }) throws -> (Gateway, Int) {
        var config = GatewayConfig()
        config.poller = poller
        config.maxConnections = 64
        config.tickMilliseconds = 10
        config.listen = [GatewayConfig.ListenAddress(host: "127.0.0.1", port: 0),
                         GatewayConfig.ListenAddress(host: "127.0.0.1", port: 0, udp: true)]
        configure(&config)
        let g = try Gateway(config: config, handler: handler, logger: log.logger)
        try g.start()
        running.append(g)
        return (g, g.ports[1])
    }

    private static func frame(_ seq: UInt32, bodySize: Int, cmd: UInt16 = 1) -> [UInt8] {
        TestClient.frame(seq: seq, cmd: cmd, uid: 9, bodySize: bodySize)
    }

    /// Reads datagrams until `frames` frames have come (or a receive times out); the frames and the
    /// datagrams' sizes. Deal and Send may run in parallel, so how replies share datagrams varies.
    private static func collect(_ c: UDPTestClient, frames count: Int) -> ([[UInt8]], [Int]) {
        var (frames, sizes) = ([[UInt8]](), [Int]())
        while frames.count < count, let d = c.receive() {
            frames += UDPTestClient.frames(d)
            sizes.append(d.count)
        }
        return (frames, sizes)
    }

    /// Sends frames, reads the answer's datagram, and proves the address with the token it carries.
    private func prove(_ c: UDPTestClient, seq: UInt32) throws -> [UInt8] {
        let request = Self.frame(seq, bodySize: 10)
        try c.send(request)
        let answer = try XCTUnwrap(c.receive(), "first answer")
        let token = try XCTUnwrap(UDPTestClient.token(answer), "the first datagram begins with the token")
        XCTAssertEqual(Array(answer[26...]), request, "then the echo")
        return token
    }

    func testEchoThroughAccess() throws {
        for poller in Self.pollers {
            let (g, port) = try startUDP(poller)
            let c = try UDPTestClient(port: port)
            let token = try prove(c, seq: 1)
            // Several frames in one datagram, with the token echoed first: the echoes come back without it.
            let frames = (0..<5).map { Self.frame(10 + UInt32($0), bodySize: $0 * 40) }
            try c.send(token + frames.joined())
            let (echoed, _) = Self.collect(c, frames: frames.count)
            XCTAssertEqual(echoed, frames, "\(poller): the frames, in order, without the token")
            // Three 618-byte frames cannot share one 1,472-byte datagram.
            let more = (0..<3).map { Self.frame(20 + UInt32($0), bodySize: 600) }
            try c.send(Array(more.joined()))
            let (again, sizes) = Self.collect(c, frames: more.count)
            XCTAssertEqual(again, more, "\(poller)")
            XCTAssertGreaterThanOrEqual(sizes.count, 2)
            XCTAssertTrue(sizes.allSatisfy { $0 <= 1472 }, "\(poller): datagrams \(sizes)")
            let s = g.stats().udp
            XCTAssertEqual(s.sessionsOpened, 1)
            XCTAssertEqual(s.sessionsOpen, 1)
            XCTAssertEqual(s.sessionsProven, 1)
            XCTAssertEqual(s.datagramsIn, 3)
            XCTAssertEqual(s.withheldDatagrams, 0)
            tearDown()
        }
    }

    /// Access with a 1 s UDP idle timeout, behind an aggregation server (poll) in front of bin_test's core:
    /// the echo comes back, OPENED says UDP, and the core hears CLOSED when the session idles out.
    func testEchoThroughAggregationAndIdleTimeout() throws {
        for poller in Self.pollers {
            let (coreGateway, core) = try startCore()
            let aggregation = try startAggregation(upstream: [coreGateway.port])
            waitFor("aggregation's links up") { aggregation.stats().linksUp == 2 }
            let access = try startAccess(upstream: [aggregation.port]) {
                $0.poller = poller
                $0.udpIdleTimeout = 1
                $0.listen = [GatewayConfig.ListenAddress(host: "127.0.0.1", port: 0),
                             GatewayConfig.ListenAddress(host: "127.0.0.1", port: 0, udp: true)]
            }
            waitFor("access links up") { access.stats().linksUp == 2 }
            let c = try UDPTestClient(port: access.ports[1])
            let token = try prove(c, seq: 1)
            let frames = (0..<4).map { Self.frame(100 + UInt32($0), bodySize: 50 * $0) }
            try c.send(token + frames.joined())
            // Each reply comes down as its own DATA, so they may leave in one datagram or several.
            let (echoed, _) = Self.collect(c, frames: frames.count)
            XCTAssertEqual(echoed, frames, "\(poller): echoed by the core through two tiers, in order")
            XCTAssertEqual(core.opened, 1)
            XCTAssertEqual(core.udpOpened, 1, "OPENED carries transport 5 (UDP) through the aggregation tier")
            waitFor("the core hears CLOSED at the idle timeout (\(poller))") { core.closed == 1 }
            XCTAssertEqual(access.stats().closes(.idle), 1)
            XCTAssertEqual(access.stats().udp.sessionsOpen, 0)
            // The address opens a new session afterwards.
            _ = try prove(c, seq: 2)
            XCTAssertEqual(core.opened, 2)
            tearDown()
        }
    }

    /// Answers every frame with ten 1,000-byte frames: far more than three times what a request brings.
    private final class Amplifier: GatewayHandler {
        func received(_ frame: Frame, on connection: Connection) {
            let body = [UInt8](repeating: 0x5A, count: 1000)
            for i in 0..<10 {
                let header = FrameHeader(length: 0, seq: frame.header.seq &+ UInt32(i), cmd: 2)
                body.withUnsafeBytes { connection.send(header, body: $0) }
            }
        }
    }

    func testAmplificationBoundAgainstASourceThatNeverEchoesItsToken() throws {
        for poller in Self.pollers {
            let (g, port) = try startUDP(poller, handler: Amplifier())
            let c = try UDPTestClient(port: port)
            let requests = 10  // fewer than a session's queue holds: none is dropped for want of room
            for seq in 0..<requests { try c.send(Self.frame(UInt32(seq), bodySize: 0)) }
            // Every request is dealt, and each produced 10 frames the bound withholds most of.
            waitFor("all requests dealt (\(poller))") { g.stats().framesIn == UInt64(requests) }
            waitFor("datagrams withheld (\(poller))") { g.stats().udp.withheldDatagrams > 0 }
            let received = c.drain()
            XCTAssertLessThanOrEqual(c.bytesReceived, 3 * c.bytesSent,
                                     "\(poller): at most 3x the \(c.bytesSent) bytes received before proof")
            XCTAssertGreaterThan(c.bytesReceived, 0)
            let s = g.stats().udp
            XCTAssertEqual(s.sessionsProven, 0)
            XCTAssertGreaterThan(s.withheldBytes, 0)
            // Proved: the next request's ten frames all come back.
            let token = try XCTUnwrap(received.lazy.compactMap(UDPTestClient.token).first)
            try c.send(token + Self.frame(1000, bodySize: 0))
            // Replies to the first requests still on their way are told apart by seq (below 1000).
            func seq(_ f: [UInt8]) -> Int { f[4..<8].reduce(0) { $0 << 8 | Int($1) } }
            var frames: [[UInt8]] = []
            while frames.count < 10, let d = c.receive() {
                frames += UDPTestClient.frames(d).filter { seq($0) >= 1000 && $0.count > 26 }
            }
            XCTAssertEqual(frames.map(seq), Array(1000..<1010), "\(poller): after the proof, nothing is withheld")
            tearDown()
        }
    }

    func testOversizedFrameIsAnsweredWithAStatus() throws {
        for poller in Self.pollers {
            let (g, port) = try startUDP(poller) { $0.udpMaxDatagram = 1472 }
            let c = try UDPTestClient(port: port)
            let token = try prove(c, seq: 1)
            let fits = Self.frame(2, bodySize: 1472 - 18)
            try c.send(token + fits)
            XCTAssertEqual(c.receive(), fits, "\(poller): a frame of exactly udp_max_datagram goes out whole")
            let big = Self.frame(3, bodySize: 1472 - 18 + 1)
            try c.send(big)
            let answer = try XCTUnwrap(c.receive())
            XCTAssertEqual(answer.count, 18, "\(poller): only the header comes back")
            let header = answer.withUnsafeBytes { FrameHeader(decoding: $0.baseAddress!) }
            XCTAssertEqual(header.seq, 3)
            XCTAssertEqual(header.length, 18)
            XCTAssertEqual(header.status, GatewayStatus.datagramTooLarge)
            XCTAssertEqual(g.stats().udp.tooLarge, 1)
            tearDown()
        }
    }

    func testGarbageDatagramsAreCountedAndLeaveTheSessionAlone() throws {
        for poller in Self.pollers {
            let (g, port) = try startUDP(poller)
            let c = try UDPTestClient(port: port)
            _ = try prove(c, seq: 1)
            try c.send([1, 2, 3, 4, 5])                                     // runt
            try c.send(TestClient.rawHeader(length: 10))                    // bad length
            try c.send(Array(Self.frame(2, bodySize: 100).prefix(60)))      // frame past the end
            try c.send(Self.frame(3, bodySize: 10) + [0, 0, 0])             // trailing bytes
            var wrongToken = Self.frame(0, bodySize: 8, cmd: 0xFF04)
            wrongToken[25] ^= 0xFF
            try c.send(wrongToken + Self.frame(4, bodySize: 0))              // a token that is not this address's
            // Another address's garbage opens no session.
            let other = try UDPTestClient(port: port, source: "127.0.0.2")
            try other.send([0xFF])
            let request = Self.frame(5, bodySize: 33)
            try c.send(request)
            XCTAssertEqual(c.receive().map(UDPTestClient.frames)?.last, request, "\(poller): the session still echoes")
            let s = g.stats().udp
            XCTAssertEqual(s.runts, 2)
            XCTAssertEqual(s.badLengths, 1)
            XCTAssertEqual(s.partialFrames, 2)
            XCTAssertEqual(s.badTokens, 1)
            XCTAssertEqual(s.sessionsOpened, 1, "\(poller): garbage opens no session")
            XCTAssertEqual(g.stats().framesIn, 2, "\(poller): only the two good frames were dealt")
            XCTAssertEqual(g.stats().closes.reduce(0, +), 0)
            tearDown()
        }
    }
}
