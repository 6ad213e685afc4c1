import Foundation
import Glibc
import XCTest
@_spi(Benchmarks) @testable import GatewayCore
import LinkCore
import TestSupport

/// The awkward shapes of IsolationTests on the other transports (docs/WEBSOCKET.md, docs/TLS.md,
/// docs/UDP.md): a client that stops reading, a message of exactly max_frame, a burst of pushes and
/// a core dying with requests in flight, each beside clients that must not notice.
final class TransportShapesTests: PushCoreTestCase {
    private static let tls = Result { try TLSFixtures() }

    private static func frame(_ seq: UInt32, bodySize: Int, cmd: UInt16 = 1) -> [UInt8] {
        ownedFrame(owner: 3, seq: seq, bodySize: bodySize, cmd: cmd)
    }

    private static func header(_ frame: [UInt8]) -> FrameHeader {
        frame.withUnsafeBytes { FrameHeader(decoding: $0.baseAddress!) }
    }

    /// A WebSocket client sends 300 frames of 60 KB and reads nothing while 2 MB and more of replies
    /// wait for it (it takes 4 KB): it is paused, not closed, while WebSocket and TCP witnesses are
    /// answered; when it reads again it gets every frame back, in order. Under both pollers.
    func testAWebSocketClientThatStopsReadingStallsNobodyAndGetsEverythingBack() throws {
        for poller in PollerKind.allCases {
            let g = try startGateway(poller, log: log) {
                $0.listen = [.init(host: "127.0.0.1", port: 0, webSocketPath: "/gw"), .init(host: "127.0.0.1", port: 0)]
                $0.writeStallTimeout = 300  // this shape is a pause, not a stall to close
            }
            running.append(g)
            let stuck = try WebSocketClient(port: g.ports[0], receiveBuffer: 4096)
            XCTAssertEqual(stuck.status, 101)
            let frames = (0..<300).map { Self.frame(UInt32($0), bodySize: 60_000 - 18 + $0) }
            let messages = frames.map { WebSocketClient.frame(2, $0) }
            let writer = stuck.tcp  // the socket alone: the reader's state stays on this thread
            let sent = AtomicInt()
            let sender = Thread {
                for m in messages {
                    guard (try? writer.send(m)) != nil else { return }
                    _ = sent.add()
                }
            }
            sender.start()
            waitFor("\(poller): 2 MB in from the non-reader") { g.stats().bytesIn >= 2 << 20 }
            let wsWitnesses = try (0..<10).map { _ in try WebSocketClient(port: g.ports[0]) }
            let tcpWitnesses = try (0..<10).map { _ in try TestClient(port: g.ports[1]) }
            for round in 0..<10 {
                for (i, w) in wsWitnesses.enumerated() {
                    let f = Self.frame(UInt32(round * 100 + i), bodySize: 64)
                    try w.send(WebSocketClient.frame(2, f))
                    XCTAssertEqual(w.receiveFrames(f.count), f, "\(poller): ws witness \(i), round \(round)")
                }
                for (i, w) in tcpWitnesses.enumerated() {
                    XCTAssertTrue(w.echoes(Self.frame(UInt32(round * 100 + i), bodySize: 64)),
                                  "\(poller): tcp witness \(i), round \(round)")
                }
            }
            let expected = frames.joined()
            XCTAssertTrue(stuck.receiveFrames(expected.count) == Array(expected),
                          "\(poller): every frame back, in order, once it reads")
            XCTAssertEqual(sent.load(), frames.count)
            // A release build ends the witnesses' lives at their last use, closing them before this count.
            withExtendedLifetime((wsWitnesses, tcpWitnesses)) {
                XCTAssertEqual(g.stats().closes.reduce(0, +), 0, "\(poller): nobody was closed")
            }
            tearDown()
        }
    }

    /// A TLS client that sends 8 MB and never reads is closed alone, as a slow consumer: its 8 MB of
    /// replies are more than the kernel's 4 MB send buffer (net.ipv4.tcp_wmem) and its ring hold, so
    /// the gateway stalls writing to it. TLS and plain witnesses opened before it echo before and after.
    func testATLSClientThatNeverReadsIsClosedAloneAtTheWriteStallTimeout() throws {
        let fixtures = try Self.tls.get()
        let g = try startGateway(.epoll, log: log) { c in
            c.listen = [.init(host: "127.0.0.1", port: 0, tls: true), .init(host: "127.0.0.1", port: 0)]
            c.tls.pairs = [TLSSettings.Pair(certificate: fixtures.pair("server").certificate,
                                            key: fixtures.pair("server").key)]
            c.writeStallTimeout = 2
        }
        running.append(g)
        let ca = fixtures.path("ca.pem")
        let tlsWitness = try TLSTestClient(port: g.ports[0], ca: ca)
        let plainWitness = try TestClient(port: g.ports[1])
        XCTAssertTrue(tlsWitness.echoes(Self.frame(1, bodySize: 100)))
        let stuck = try TLSTestClient(port: g.ports[0], ca: ca, receiveBuffer: 4096, timeoutSeconds: 2)
        let writer = stuck
        let chunk = (0..<128).flatMap { Self.frame(UInt32($0), bodySize: 65_000) }
        let sender = Thread { _ = try? writer.send(chunk) }  // gives up at its 2 s send timeout
        sender.start()
        waitFor("closed as a slow consumer", seconds: 30) { g.stats().closes(.slowConsumer) == 1 }
        XCTAssertTrue(tlsWitness.echoes(Self.frame(2, bodySize: 5000)), "the TLS witness is served")
        XCTAssertTrue(plainWitness.echoes(Self.frame(2, bodySize: 5000)), "the plain witness is served")
        let stats = g.stats()
        XCTAssertEqual(stats.closes.reduce(0, +), 1, "only the non-reader: \(stats.closes)")
    }

    /// A frame of exactly max_frame in one WebSocket message passes the gateway itself and a core
    /// behind it, and one byte more closes only that client with 1009 while a witness is served.
    func testAMessageOfExactlyMaxFramePassesWebSocketToTheCore() throws {
        let (coreGateway, _) = try startCore()
        let maxFrame = 256 << 10
        let access = try startAccess(upstream: [coreGateway.port]) {
            $0.maxFrame = maxFrame
            $0.listen = [.init(host: "127.0.0.1", port: 0, webSocketPath: "/gw")]
        }
        let local = try startGateway(.poll, log: log) {
            $0.maxFrame = maxFrame
            $0.listen = [.init(host: "127.0.0.1", port: 0, webSocketPath: "/gw")]
        }
        running.append(local)
        waitFor("links up") { access.stats().linksUp == 2 }
        for (name, g) in [("through a core", access), ("the gateway's own handler", local)] {
            let witness = try WebSocketClient(port: g.ports[0])
            let client = try WebSocketClient(port: g.ports[0])
            let largest = Self.frame(7, bodySize: maxFrame - 18)
            try client.send(WebSocketClient.frame(2, largest))
            XCTAssertTrue(client.receiveFrames(largest.count) == largest, "\(name): exactly max_frame, echoed")
            try client.send(WebSocketClient.frame(2, Self.frame(8, bodySize: maxFrame - 17)))
            XCTAssertEqual(client.receiveClose(), 1009, "\(name): one byte more")
            let f = Self.frame(9, bodySize: 300)
            try witness.send(WebSocketClient.frame(2, f))
            XCTAssertEqual(witness.receiveFrames(f.count), f, "\(name): the witness is served")
            waitFor("\(name): counted") { g.stats().closes(.webSocket) == 1 }
        }
    }

    /// A core dies with requests in flight from a WebSocket client and a UDP client: each hears one
    /// upstream_lost carrying the seq of its last request, and neither is closed.
    func testACoreKilledWithRequestsInFlightTellsWebSocketAndUDPClients() throws {
        for poller in PollerKind.allCases {
            let core = IsolationTests.SilentCore()
            let coreGateway = try startCoreServer(core)
            let access = try startAccess(upstream: [coreGateway.port]) {
                $0.poller = poller
                $0.upstreamLinks = 1
                $0.listen = [.init(host: "127.0.0.1", port: 0, webSocketPath: "/gw"),
                             .init(host: "127.0.0.1", port: 0, udp: true)]
            }
            waitFor("link up") { access.stats().linksUp == 1 }
            let ws = try WebSocketClient(port: access.ports[0])
            try ws.send(WebSocketClient.frame(2, (0..<3).flatMap { Self.frame(100 + UInt32($0), bodySize: 40) }))
            let udp = try UDPTestClient(port: access.ports[1])
            try udp.send((0..<3).flatMap { Self.frame(200 + UInt32($0), bodySize: 40) })
            waitFor("\(poller): the core holds all six requests") { core.frames.load() == 6 }
            coreGateway.stop()
            running.removeAll { $0 === coreGateway }
            let wsNotice = try XCTUnwrap(ws.receiveFrames(FrameHeader.size), "\(poller): ws notice")
            XCTAssertTrue(TestClient.isUpstreamLost(wsNotice), "\(poller)")
            XCTAssertEqual(Self.header(wsNotice).seq, 102, "\(poller): the seq of its last frame")
            let datagram = try XCTUnwrap(udp.receive(), "\(poller): udp notice")
            let notices = UDPTestClient.frames(datagram).filter(TestClient.isUpstreamLost)
            XCTAssertEqual(notices.map { Self.header($0).seq }, [202], "\(poller): one notice, its last seq")
            XCTAssertEqual(access.stats().upstreamLostNotices, 2)
            XCTAssertEqual(access.stats().closes.reduce(0, +), 0, "\(poller): nobody closed")
            tearDown()
        }
    }

    /// A burst of pushes to a uid held by a WebSocket device, a UDP device and a TCP device: each
    /// gets every push, in order. The UDP burst is sized so that its datagrams fit the client's
    /// socket buffer even unread (10,000 where the buffer allows): the kernel drops nothing either.
    func testABurstOfPushesReachesWebSocketUDPAndTCPDevicesInOrder() throws {
        let (coreGateway, core) = try startPushCore()
        let access = try startAccess(upstream: [coreGateway.port]) {
            $0.listen = [.init(host: "127.0.0.1", port: 0),
                         .init(host: "127.0.0.1", port: 0, webSocketPath: "/gw"),
                         .init(host: "127.0.0.1", port: 0, udp: true)]
        }
        waitFor("links up") { access.stats().linksUp == 2 }
        let tcp = try TestClient(port: access.ports[0])
        login(tcp, uid: 42)
        let ws = try WebSocketClient(port: access.ports[1])
        let wsLogin = PushCore.request(10, seq: 1, PushCore.u32(42))
        try ws.send(WebSocketClient.frame(2, wsLogin))
        XCTAssertEqual(ws.receiveFrames(wsLogin.count), wsLogin, "ws login echoed")
        let udp = try UDPTestClient(port: access.ports[2], timeoutSeconds: 10)
        let udpLogin = PushCore.request(10, seq: 1, PushCore.u32(42))
        try udp.send(udpLogin)
        let answer = try XCTUnwrap(udp.receive(), "udp login answered")
        let token = try XCTUnwrap(UDPTestClient.token(answer), "with the token first")
        XCTAssertEqual(UDPTestClient.frames(answer).last, udpLogin)
        try udp.send(token + Self.frame(5, bodySize: 0))  // proved: nothing is withheld from here on
        XCTAssertEqual(udp.receive().map(UDPTestClient.frames)?.last, Self.frame(5, bodySize: 0))

        var buffer: Int32 = 0
        var size = socklen_t(MemoryLayout<Int32>.size)
        getsockopt(udp.fd, SOL_SOCKET, SO_RCVBUF, &buffer, &size)
        let payload = [UInt8](repeating: 0x42, count: 40)
        let perDatagram = access.config.udpMaxDatagram / (FrameHeader.size + payload.count)
        let count = min(10_000, Int(buffer) / 4096 * perDatagram)  // a datagram's kernel cost is under 4 KiB
        XCTAssertGreaterThanOrEqual(count, 1000, "the UDP client's buffer holds a real burst")

        let control = try TestClient(port: access.ports[0])
        send(control, 23, PushCore.u32(UInt32(count)) + PushCore.scoped(.uid, 42, payload))
        func isPush(_ f: [UInt8], _ n: Int) -> Bool {
            let h = Self.header(f)
            return h.cmd == PushCore.pushedCmd && h.seq == UInt32(n) && Array(f[FrameHeader.size...]) == payload
        }
        let pushSize = FrameHeader.size + payload.count
        for n in 0..<count {
            guard let f = tcp.receiveFrame(), isPush(f, n) else { return XCTFail("tcp device: push \(n)") }
            guard let w = ws.receiveFrames(pushSize), isPush(w, n) else {
                return XCTFail("ws device: push \(n), close code \(ws.closeCode.map(String.init) ?? "none")")
            }
        }
        var udpPushes: [[UInt8]] = []
        while udpPushes.count < count, let d = udp.receive() { udpPushes += UDPTestClient.frames(d) }
        XCTAssertEqual(udpPushes.count, count, "udp device: every push")
        XCTAssertTrue(udpPushes.enumerated().allSatisfy { isPush($0.element, $0.offset) }, "udp device: in order")
        XCTAssertEqual(core.refusedPushes.load(), 0)
        let stats = access.stats()
        XCTAssertEqual(stats.pushDeliveries, UInt64(3 * count))
        XCTAssertEqual(stats.pushDropped + stats.pushOverflowCloses + stats.pushDroppedClosing, 0)
        XCTAssertEqual(stats.udp.withheldDatagrams, 0)
        XCTAssertEqual(stats.closes.reduce(0, +), 0, "nobody was closed")
    }
}
