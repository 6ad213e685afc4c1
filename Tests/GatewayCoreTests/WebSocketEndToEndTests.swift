import Glibc
import XCTest
@_spi(Benchmarks) @testable import GatewayCore
import BinTestKit

/// WebSocket listeners end to end (docs/WEBSOCKET.md): the handshake and its refusals, frames in
/// binary messages both ways, fragments, pings, close codes, and a core behind the gateway.
final class WebSocketEndToEndTests: XCTestCase {
    private var gateways: [Gateway] = []
    private let log = LogRecorder()

    override func tearDown() {
        for g in gateways.reversed() { g.stop() }
        gateways = []
        super.tearDown()
    }

    /// A gateway with a WebSocket listener at /gw (listener 0) and a plain one (listener 1).
    private func start(_ poller: PollerKind = .epoll, handler: GatewayHandler = EchoHandler(),
                       _ configure: (inout GatewayConfig) -> Void = { _ in }) throws -> Gateway {
        let g = try startGateway(poller, handler: handler, log: log) { config in
            config.listen = [.init(host: "127.0.0.1", port: 0, webSocketPath: "/gw"), .init(host: "127.0.0.1", port: 0)]
            config.webSocketOrigins = ["https://app.example"]
            configure(&config)
        }
        gateways.append(g)
        return g
    }

    private func frame(_ seq: UInt32, body: Int) -> [UInt8] { ownedFrame(owner: 5, seq: seq, bodySize: body) }

    func testFramesInBinaryMessagesAreEchoedInBinaryMessagesUnderBothPollers() throws {
        for poller in [PollerKind.epoll, .poll] {
            let g = try start(poller)
            let ws = try WebSocketClient(port: g.ports[0])
            XCTAssertEqual(ws.status, 101, ws.head)
            XCTAssertTrue(ws.head.contains("Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n"), ws.head)
            // Two frames in one message, one in the next, then one sent as three fragments.
            let frames = (1...4).map { frame($0, body: Int($0) * 100) }
            try ws.send(WebSocketClient.frame(2, frames[0] + frames[1]) + WebSocketClient.frame(2, frames[2]))
            try ws.send(WebSocketClient.frame(2, Array(frames[3][0..<2]), fin: false))
            try ws.send(WebSocketClient.frame(0, Array(frames[3][2..<200]), fin: false))
            try ws.send(WebSocketClient.frame(0, Array(frames[3][200...])))
            let expected = frames.flatMap { $0 }
            XCTAssertTrue(ws.receiveFrames(expected.count) == expected, "\(poller)")
            // The plain listener beside it still speaks plain frames.
            let tcp = try TestClient(port: g.ports[1])
            XCTAssertTrue(tcp.echoes(frame(9, body: 10)), "\(poller)")
        }
    }

    func testRepliesBiggerThanTheSocketTakesArriveWholeThroughPartialWrites() throws {
        let g = try start { $0.maxFrame = 1 << 20 }
        // A small receive buffer: Send's writes stop inside headers and payloads again and again.
        let ws = try WebSocketClient(port: g.ports[0], receiveBuffer: 4096)
        XCTAssertEqual(ws.status, 101)
        var expected: [UInt8] = []
        for seq in 1...6 {
            let f = frame(UInt32(seq), body: seq % 2 == 0 ? 300_000 : 70)
            expected += f
            try ws.send(WebSocketClient.frame(2, f))
        }
        XCTAssertTrue(ws.receiveFrames(expected.count) == expected, "every reply whole and in order")
        try ws.send(WebSocketClient.frame(9, Array("still in step".utf8)))
        XCTAssertEqual(ws.receivePong(), Array("still in step".utf8), "a pong between messages, not inside one")
    }

    func testPingsAreAnsweredWithTheirPayloadAndKeepAnIdleConnectionOpen() throws {
        let g = try start { $0.idleTimeout = 2 }
        let ws = try WebSocketClient(port: g.ports[0])
        try ws.send(WebSocketClient.frame(9, []))
        XCTAssertEqual(ws.receivePong(), [])
        // Pings alone, every 100 ms for 3 s: longer than idle_timeout, so only they keep it open.
        for i in 0..<30 {
            try ws.send(WebSocketClient.frame(9, [UInt8(i)]))
            XCTAssertEqual(ws.receivePong(), [UInt8(i)])
            usleep(100_000)
        }
        let f = frame(1, body: 3)
        try ws.send(WebSocketClient.frame(2, f))
        XCTAssertEqual(ws.receiveFrames(f.count), f)
        XCTAssertEqual(g.stats().closes(.idle), 0)
    }

    func testCloseCodesForEachBrokenRule() throws {
        let g = try start { $0.maxFrame = 1024 }
        let f = frame(1, body: 10)
        let cases: [([UInt8], UInt16, String)] = [
            (WebSocketClient.frame(8, [0x03, 0xE8] + Array("bye".utf8)), 1000, "the client's close is echoed"),
            (WebSocketClient.frame(8, []), 1000, "a close without a code is answered 1000"),
            (WebSocketClient.frame(8, [0x0F, 0xA1]), 4001, "an application code is echoed"),
            (WebSocketClient.frame(1, Array("hello".utf8)), 1003, "a text message"),
            (WebSocketClient.frame(2, f, mask: nil), 1002, "an unmasked client frame"),
            (WebSocketClient.frame(0, f), 1002, "a continuation with no message"),
            (WebSocketClient.frame(2, [UInt8](repeating: 0, count: 1025)), 1009, "a message over max_frame"),
            (WebSocketClient.frame(2, Array(f[0..<10]), fin: false) + WebSocketClient.frame(0, [UInt8](repeating: 0, count: 1020)),
             1009, "fragments adding up to more than max_frame"),
            (WebSocketClient.frame(2, Array(f[0..<10])) + WebSocketClient.frame(2, Array(f[10...])), 1007,
             "a frame split across two messages"),
            (WebSocketClient.frame(8, [0x03, 0xE8, 0xFF]), 1007, "a close reason that is not UTF-8"),
        ]
        var expectedCloses: UInt64 = 0
        for (bytes, code, why) in cases {
            let ws = try WebSocketClient(port: g.ports[0])
            XCTAssertEqual(ws.status, 101, why)
            try ws.send(WebSocketClient.frame(2, f))
            XCTAssertEqual(ws.receiveFrames(f.count), f, "\(why): served before")
            try ws.send(bytes)
            XCTAssertEqual(ws.receiveClose(), code, why)
            XCTAssertTrue(ws.tcp.isClosedByPeer(), "\(why): the gateway closes the connection after its close frame")
            if code != 1000 && code != 4001 { expectedCloses += 1 }
        }
        XCTAssertTrue(waitUntil { g.stats().closes(.webSocket) == expectedCloses }, "\(g.stats().closes)")
        XCTAssertTrue(waitUntil { g.stats().closes(.peer) == 3 }, "\(g.stats().closes)")
    }

    func testBadHandshakesGetAnHTTPErrorAndAClose() throws {
        let g = try start { $0.webSocketHandshakeTimeout = 1 }
        let refusals: [(WebSocketClient, Int, String)] = [
            (try WebSocketClient(port: g.ports[0], origin: "https://evil.example"), 403, "an origin not listed"),
            (try WebSocketClient(port: g.ports[0], path: "/other"), 404, "another path"),
        ]
        for (ws, status, why) in refusals {
            XCTAssertEqual(ws.status, status, "\(why): \(ws.head)")
            XCTAssertTrue(ws.tcp.isClosedByPeer(), why)
        }
        // A listed origin, and a client that sends none (not a browser), are served.
        for origin in ["https://app.example", nil] {
            let ws = try WebSocketClient(port: g.ports[0], origin: origin)
            XCTAssertEqual(ws.status, 101, ws.head)
            let f = frame(2, body: 1)
            try ws.send(WebSocketClient.frame(2, f))
            XCTAssertEqual(ws.receiveFrames(f.count), f)
        }
        // A plain gateway frame on the WebSocket listener: 400 at once, then the close.
        let plain = try TestClient(port: g.ports[0])
        try plain.send(frame(3, body: 4))
        let answer = plain.receive(12).map { String(decoding: $0, as: UTF8.self) }
        XCTAssertEqual(answer, "HTTP/1.1 400")
        XCTAssertTrue(plain.isClosedByPeer())
        // Half a request, then nothing: closed at ws_handshake_timeout.
        let slow = try TestClient(port: g.ports[0])
        try slow.send(Array("GET /gw HTTP/1.1\r\nHost: x\r\n".utf8))
        XCTAssertTrue(slow.isClosedByPeer(), "closed by the handshake deadline (the client's read timeout is 5 s)")
        XCTAssertTrue(waitUntil { g.stats().closes(.webSocket) == 4 }, "\(g.stats().closes)")
    }

    func testAWebSocketClientReachesACoreLikeATCPOne() throws {
        var settings = CoreSettings()
        settings.port = 0
        let (core, echo) = try CoreMode.start(settings, logger: log.logger)
        gateways.append(core)
        let access = try start { config in
            config.upstream = [.init(host: "127.0.0.1", port: core.port)]
            config.tickMilliseconds = 10
        }
        XCTAssertTrue(waitUntil(seconds: 10) { access.stats().linksUp == 2 }, "links up")
        let ws = try WebSocketClient(port: access.ports[0])
        XCTAssertEqual(ws.status, 101)
        let frames = (1...20).map { frame($0, body: Int($0) * 37) }
        try ws.send(WebSocketClient.frame(2, frames.flatMap { $0 }))
        XCTAssertTrue(ws.receiveFrames(frames.joined().count) == Array(frames.joined()), "every frame back, in order")
        try ws.send(WebSocketClient.frame(8, [0x03, 0xE8]))
        XCTAssertEqual(ws.receiveClose(), 1000)
        XCTAssertTrue(waitUntil { echo.closed == 1 }, "the core hears CLOSED for the session")
        XCTAssertEqual(echo.opened, 1)
    }

    func testIdleStateStaysWithinItsBudget() {
        // What a WebSocket connection holds beyond a TCP one (docs/WEBSOCKET.md): its state entry.
        XCTAssertLessThanOrEqual(MemoryLayout<WebSocketInput>.stride + MemoryLayout<WebSocketOutput>.stride, 256)
    }
}
