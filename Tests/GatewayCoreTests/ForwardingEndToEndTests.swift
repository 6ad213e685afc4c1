import XCTest
import Foundation
import Glibc
import Synchronization
@testable import BinTestKit
@_spi(Benchmarks) @testable import GatewayCore
import LinkCore

/// What the forwarding tests share: started engines (stopped in reverse order),
/// a log recorder, an echo core, an access gateway in front of some ports, waiting.
class ForwardingTestCase: XCTestCase {
    var running: [Gateway] = []
    let log = LogRecorder()

    override func tearDown() {
        for g in running.reversed() { g.stop() }
        running = []
    }

    func startCore(port: Int = 0, delayMicroseconds: Int = 0) throws -> (Gateway, EchoCore) {
        var settings = CoreSettings()
        settings.port = port
        settings.delayMicroseconds = delayMicroseconds
        let (g, c) = try CoreMode.start(settings, logger: log.logger)
        running.append(g)
        return (g, c)
    }

    /// A core that spends `delayMicroseconds` on the thread that reads its links before each echo:
    /// one that cannot keep up (CPU-bound), so its links fill and push back on the access node.
    func startBlockingCore(delayMicroseconds: UInt32) throws -> Gateway {
        final class Blocking: CoreHandler {
            let delay: UInt32
            init(delay: UInt32) { self.delay = delay }
            func opened(_ session: CoreSession, peer: PeerAddress) {}
            func closed(_ session: CoreSession, cause: UInt8) {}
            func received(_ frame: Frame, clientFrame: UnsafeRawBufferPointer, from session: CoreSession) {
                usleep(delay)
                session.echo(frame)
            }
        }
        return try startCoreServer(Blocking(delay: delayMicroseconds))
    }

    /// A core on LinkCore running `handler`, on loopback with the default limits; stopped at tearDown.
    func startCoreServer(_ handler: CoreHandler) throws -> Gateway {
        var base = GatewayConfig()
        base.port = 0
        let server = CoreServer(handler: handler, node: 1, clientMaxFrame: base.maxFrame, logger: log.logger)
        let g = try Gateway(config: CoreServer.config(base, clientMaxFrame: base.maxFrame), handler: server,
                            logger: log.logger)
        try g.start()
        running.append(g)
        return g
    }

    /// An access gateway forwarding to `ports` on loopback, with a fast clock and fast reconnects.
    func startAccess(upstream ports: [Int], _ configure: (inout GatewayConfig) -> Void = { _ in }) throws -> Gateway {
        var config = GatewayConfig()
        config.port = 0
        config.maxConnections = 4000
        config.tickMilliseconds = 10
        config.linkRetryMaxMilliseconds = 200
        config.upstream = ports.map { GatewayConfig.Upstream(host: "127.0.0.1", port: $0) }
        configure(&config)
        let g = try Gateway(config: config, handler: EchoHandler(), logger: log.logger)
        try g.start()
        running.append(g)
        return g
    }

    /// Sends `count` frames of varied sizes at once; true when every reply came back byte for byte.
    func pipelined(_ client: TestClient, seqBase: UInt32, count: Int) -> Bool {
        var request: [UInt8] = []
        for n in 0..<count {
            request += TestClient.frame(seq: seqBase + UInt32(n), uid: seqBase, bodySize: (n * 53 + Int(seqBase)) % 900)
        }
        return client.exchange(request, expect: request.count) == request
    }

    /// An aggregation server (poll, like the tier runs) forwarding to `ports`, with a fast clock.
    func startAggregation(upstream ports: [Int], port: Int = 0,
                          _ configure: (inout GatewayConfig) -> Void = { _ in }) throws -> Gateway {
        try startAccess(upstream: ports) {
            $0.role = .aggregation
            $0.poller = .poll
            $0.port = port
            configure(&$0)
        }
    }

    func waitFor(_ what: String, seconds: Double = 10, _ condition: () -> Bool) {
        let deadline = Date().addingTimeInterval(seconds)
        while !condition() && Date() < deadline { usleep(5_000) }
        XCTAssertTrue(condition(), what)
    }
}

/// The access role end to end: clients -> gateway --upstream -> bin_test core,
/// under both pollers; every reply byte-checked on its own connection.
final class ForwardingEndToEndTests: ForwardingTestCase {
    func testClientsThroughAccessToCoreUnderBothPollers() throws {
        for poller in [PollerKind.epoll, .poll] {
            let (_, core) = try startCore()
            let corePort = running.last!.port
            let access = try startAccess(upstream: [corePort]) {
                $0.poller = poller
                // The links are checked to stay up (one OPENED per client): their silence deadline (three
                // heartbeats) is far beyond what a loaded machine can miss. At 100 ms, under ThreadSanitizer
                // at load 20, a link was declared dead and its 23 clients opened again on the other.
                $0.linkHeartbeatMilliseconds = 10_000
                $0.nodeID = 77
            }
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
        // Each client had frames on a link that died: it is told once, seq its last frame's.
        for (i, c) in clients.enumerated() {
            let before = c.framesBeforeHeartbeatEcho()
            XCTAssertEqual(before?.count, 1, "client \(i)")
            let notice = before?.first ?? []
            XCTAssertTrue(TestClient.isUpstreamLost(notice), "client \(i)")
            XCTAssertEqual(notice.withUnsafeBytes { FrameHeader(decoding: $0.baseAddress!).seq }, UInt32(i * 10 + 9))
        }
        XCTAssertEqual(access.stats().upstreamLostNotices, UInt64(clients.count))
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
        withExtendedLifetime(clients) {  // open to the counts: release builds end values at last use
            XCTAssertEqual(access.stats().closes.reduce(0, +), 0, "no client was closed")
        }
    }
}

/// Failures on the way up: a slow core, a core that breaks the protocol, and
/// thousands of sessions opened and closed across the tiers.
final class ForwardingFailureTests: ForwardingTestCase {
    /// A core that answers slowly: link rings fill, clients wait and stop being
    /// read; every frame still arrives, in order, and nothing is dropped or closed.
    func testSlowCoreBackPressuresClientsWithoutLoss() throws {
        let (coreGateway, _) = try startCore(delayMicroseconds: 300)
        let g = try startAccess(upstream: [coreGateway.port]) { $0.ringCapacity = 4 }
        waitFor("links up") { g.stats().linksUp == 2 }
        let clients = try (0..<6).map { _ in try TestClient(port: g.port) }
        var requests: [[UInt8]] = []
        for i in 0..<clients.count {
            var r: [UInt8] = []
            for n in 0..<120 { r += TestClient.frame(seq: UInt32(n), uid: UInt32(i), bodySize: 4000) }
            requests.append(r)
        }
        // All clients send at once (on their own threads), so the links are really full.
        let results = Locked<[Int: Bool]>([:])
        let sockets = clients  // each thread uses its own client only
        let sent = requests
        DispatchQueue.concurrentPerform(iterations: clients.count) { i in
            let ok = sockets[i].exchange(sent[i], expect: sent[i].count, timeoutSeconds: 60) == sent[i]
            results.withLock { $0[i] = ok }
        }
        for i in 0..<clients.count { XCTAssertEqual(results.withLock { $0[i] }, true, "client \(i)") }
        // Open to the counts: release builds end a value's life at its last use.
        let stats = withExtendedLifetime(clients) { g.stats() }
        XCTAssertEqual(stats.forwardedUp, UInt64(clients.count * 120))
        XCTAssertEqual(stats.forwardedDown, UInt64(clients.count * 120))
        XCTAssertEqual(stats.closes.reduce(0, +), 0)
        XCTAssertEqual(stats.noUpstreamReplies, 0)
    }

    /// Clients that close while their link is full (a slow core) do not close the link: each CLOSED
    /// waits for room, and the core hears every one; the link stays up, no other client notices.
    func testClientsClosingWhileTheLinkIsFullKeepTheLink() throws {
        let (coreGateway, core) = try startCore(delayMicroseconds: 100)
        let g = try startAccess(upstream: [coreGateway.port]) {
            $0.ringCapacity = 4
            $0.upstreamLinks = 1
        }
        waitFor("link up") { g.stats().linksUp == 1 }
        let stayer = try TestClient(port: g.port)
        XCTAssertTrue(pipelined(stayer, seqBase: 1, count: 3))
        let leavers = try (0..<40).map { _ in try TestClient(port: g.port) }
        for (i, c) in leavers.enumerated() {
            var burst: [UInt8] = []
            // 16 MB in all: more than the loopback socket buffers hold, so the link's ring fills.
            for n in 0..<50 { burst += TestClient.frame(seq: UInt32(n), uid: UInt32(i), bodySize: 8000) }
            try c.send(burst)
        }
        for c in leavers { c.close() }  // while the link is still full of their frames
        waitFor("the core hears CLOSED for every client that left", seconds: 30) { core.closed == 40 }
        XCTAssertEqual(g.stats().linkCloses, 0, "the link was not closed")
        XCTAssertTrue(pipelined(stayer, seqBase: 100, count: 3), "the client that stayed is served on")
        XCTAssertEqual(core.opened, 41)
    }

    /// Frames that wait longer than max_queue_wait for room on their link are answered
    /// `overloaded` and dropped, counted; every frame gets exactly one answer.
    func testFramesWaitingPastMaxQueueWaitAreAnsweredOverloaded() throws {
        let coreGateway = try startBlockingCore(delayMicroseconds: 2000)
        let g = try startAccess(upstream: [coreGateway.port]) {
            $0.ringCapacity = 4
            $0.maxQueueWait = 50
            $0.upstreamLinks = 1
            $0.maxQueuedBytes = 64 << 20  // all 9 MB a client sends may wait for it: readers here can stall
        }
        waitFor("link up") { g.stats().linksUp == 1 }
        let frames = 150
        let clients = try (0..<4).map { _ in try TestClient(port: g.port, timeoutSeconds: 20) }
        let outcome = Locked<[Int: (echoed: Int, overloaded: Int, wrong: Int)]>([:])
        let sockets = clients
        DispatchQueue.concurrentPerform(iterations: clients.count * 2) { job in
            let i = job / 2
            let requests = (0..<frames).map { TestClient.frame(seq: UInt32($0), uid: UInt32(i), bodySize: 60_000) }
            if job % 2 == 0 {
                for r in requests { try? sockets[i].send(r) }
                return
            }
            var counts = (echoed: 0, overloaded: 0, wrong: 0)
            var seen = Set<UInt32>()
            for _ in 0..<frames {
                guard let answer = sockets[i].receiveFrame() else { break }
                let h = answer.withUnsafeBytes { FrameHeader(decoding: $0.baseAddress!) }
                if !seen.insert(h.seq).inserted || Int(h.seq) >= frames {
                    counts.wrong += 1
                } else if h.status == GatewayStatus.overloaded && answer.count == FrameHeader.size && h.uid == UInt32(i) {
                    counts.overloaded += 1
                } else if answer == requests[Int(h.seq)] {
                    counts.echoed += 1
                } else {
                    counts.wrong += 1
                }
            }
            outcome.withLock { $0[i] = counts }
        }
        var overloaded = 0
        for i in 0..<clients.count {
            let c = try XCTUnwrap(outcome.withLock { $0[i] })
            XCTAssertEqual(c.echoed + c.overloaded, frames, "client \(i): one answer per frame")
            XCTAssertEqual(c.wrong, 0, "client \(i)")
            overloaded += c.overloaded
        }
        XCTAssertGreaterThan(overloaded, 0, "the slow core made frames wait past max_queue_wait")
        // Open to the counts: release builds end a value's life at its last use.
        let stats = withExtendedLifetime(clients) { g.stats() }
        XCTAssertEqual(stats.overloadedReplies, UInt64(overloaded))
        XCTAssertEqual(stats.overloadedReplies + stats.forwardedUp, UInt64(clients.count * frames))
        XCTAssertEqual(stats.closes.reduce(0, +), 0)
    }

    /// A fake core on a blocking listener: each link it accepts gets HELLO back, then
    /// `after` (if any), then silence. Counts the links it accepted.
    private final class FakeCore: @unchecked Sendable {  // `accepts` is Locked; the rest is set once
        final class Count: Sendable { let value = Locked(0) }
        let listener: Listener
        let count = Count()
        private let thread: Thread
        var accepts: Int { count.value.withLock { $0 } }

        init(after: [UInt8], limit: Int) throws {
            let listener = try Listener(host: "127.0.0.1", port: 0, backlog: 16)
            _ = fcntl(listener.fd, F_SETFL, fcntl(listener.fd, F_GETFL) & ~O_NONBLOCK)
            self.listener = listener
            let accepts = count
            thread = Thread {
                var hello = [UInt8](repeating: 0, count: 40)
                LinkMessage.hello(.init(role: .core, node: 1, link: 0, heartbeatMilliseconds: 1000)).encode(into: &hello)
                var held: [Int32] = []
                while accepts.value.withLock({ $0 }) < limit {
                    let fd = accept(listener.fd, nil, nil)
                    guard fd >= 0 else { break }
                    accepts.value.withLock { $0 += 1 }
                    var tv = timeval(tv_sec: 2, tv_usec: 0)
                    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
                    var buffer = [UInt8](repeating: 0, count: 40)
                    _ = recv(fd, &buffer, 40, Int32(MSG_WAITALL))
                    _ = send(fd, hello, 40, Int32(MSG_NOSIGNAL))
                    if !after.isEmpty { _ = send(fd, after, after.count, Int32(MSG_NOSIGNAL)) }
                    held.append(fd)
                }
                for fd in held { close(fd) }
            }
            thread.start()
        }
    }

    /// A core that answers HELLO and then sends a frame of length 17: that link is
    /// closed and reconnected; the client on the gateway is not touched.
    func testMalformedLinkFrameClosesTheLinkOnly() throws {
        let fake = try FakeCore(after: TestClient.rawHeader(length: 17), limit: 3)
        defer { close(fake.listener.fd) }
        let g = try startAccess(upstream: [fake.listener.port]) {
            $0.upstreamLinks = 1
            $0.linkRetryMaxMilliseconds = 50
        }
        let client = try TestClient(port: g.port)
        waitFor("the link is closed for the bad frame and reconnected") {
            g.stats().linkMalformed >= 2 && fake.accepts >= 2
        }
        XCTAssertTrue(log.messages(atLeast: .warning).contains { $0.contains("frame length 17") })
        XCTAssertTrue(client.echoes(TestClient.frame(seq: 1, cmd: ReservedCommand.heartbeat, bodySize: 0)),
                      "the client is untouched")
        // Open to the counts: release builds end a value's life at its last use.
        withExtendedLifetime(client) { XCTAssertEqual(g.stats().closes.reduce(0, +), 0) }
    }

    /// A core that answers HELLO and then never a heartbeat: after three missed
    /// heartbeats the link is closed and connected again.
    func testSilentCoreMissesItsHeartbeatDeadline() throws {
        let fake = try FakeCore(after: [], limit: 3)
        defer { close(fake.listener.fd) }
        let g = try startAccess(upstream: [fake.listener.port]) {
            $0.upstreamLinks = 1
            $0.linkRetryMaxMilliseconds = 50
            $0.linkHeartbeatMilliseconds = 50
        }
        waitFor("the silent link is closed and reconnected") {
            fake.accepts >= 2 && g.stats().linkCloses >= 1
        }
        XCTAssertTrue(log.messages(atLeast: .warning).contains { $0.contains("nothing heard for 3 heartbeats") })
        XCTAssertEqual(g.stats().linkMalformed, 0)
    }

    /// Thousands of sessions opened and closed through access -> core while others
    /// echo: every reply on its own connection, the core's counts exact, no stale drop.
    func testSlotReuseUnderChurnAcrossTheTiers() throws {
        let (coreGateway, echoCore) = try startCore()
        let g = try startAccess(upstream: [coreGateway.port])
        waitFor("links up") { g.stats().linksUp == 2 }
        let steady = try (0..<4).map { _ in try TestClient(port: g.port) }
        let cycles = 1500
        for n in 0..<cycles {
            let c = try TestClient(port: g.port)
            let request = TestClient.frame(seq: UInt32(n), uid: UInt32(n), bodySize: n % 300)
            XCTAssertTrue(c.echoes(request), "cycle \(n)")
            c.close()
            if n % 100 == 0 {
                for (i, s) in steady.enumerated() {
                    XCTAssertTrue(s.echoes(TestClient.frame(seq: UInt32(n), uid: UInt32(i), bodySize: 64)))
                }
            }
        }
        waitFor("every churned session closed at the core") { echoCore.closed == cycles }
        XCTAssertEqual(echoCore.opened, cycles + steady.count)
        XCTAssertEqual(g.stats().staleDrops, 0)
        XCTAssertLessThan(g.stats().connectionsOpen, 200, "slots are reclaimed")
    }
}

/// A core that echoes, and closes the session after answering a frame with cmd 99.
private final class ClosingCore: CoreHandler {
    let closes = Locked(0)
    func opened(_ session: CoreSession, peer: PeerAddress) {}
    func received(_ frame: Frame, clientFrame: UnsafeRawBufferPointer, from session: CoreSession) {
        session.echo(frame)
        if FrameHeader(decoding: clientFrame.baseAddress!).cmd == 99 { session.close() }
    }
    func closed(_ session: CoreSession, cause: UInt8) { closes.withLock { $0 += 1 } }
}

final class ForwardingCloseTests: ForwardingTestCase {
    /// CLOSED downward: the client gets every reply sent before it, then a clean end of
    /// stream; counted as an upstream close; the core is not told again.
    func testCoreClosingASessionDeliversTheRepliesBeforeIt() throws {
        let handler = ClosingCore()
        var base = GatewayConfig()
        base.port = 0
        let core = try Gateway(config: CoreServer.config(base, clientMaxFrame: base.maxFrame),
                               handler: CoreServer(handler: handler, node: 1, clientMaxFrame: base.maxFrame,
                                                   logger: log.logger), logger: log.logger)
        try core.start()
        running.append(core)
        let access = try startAccess(upstream: [core.port])
        let deadline = Date().addingTimeInterval(10)
        while access.stats().linksUp < 2 && Date() < deadline { usleep(5_000) }
        let client = try TestClient(port: access.port)
        var request: [UInt8] = []
        for n in 0..<20 { request += TestClient.frame(seq: UInt32(n), bodySize: 100 + n) }
        request += TestClient.frame(seq: 20, cmd: 99, bodySize: 7)
        XCTAssertEqual(client.exchange(request, expect: request.count), request, "every reply before the close")
        XCTAssertTrue(client.isClosedByPeer(), "then a clean close")
        while access.stats().closes(.upstream) < 1 && Date() < deadline { usleep(5_000) }
        XCTAssertEqual(access.stats().closes(.upstream), 1)
        usleep(50_000)
        XCTAssertEqual(handler.closes.withLock { $0 }, 1, "the core's session ended once")
    }
}
