import Foundation
import Glibc
import Synchronization
import XCTest
@testable import BinTestKit
@_spi(Benchmarks) @testable import GatewayCore
import LinkCore

/// Isolation (docs/LINK.md, docs/PROTOCOL.md): what waits for one client is bounded in
/// bytes, never in ring entries; nothing for one client pauses a link; a link that dies
/// leaves no request without a word; every legal message passes every tier.
final class IsolationTests: PushCoreTestCase {

    /// One client that sends big frames and never reads, on a gateway with a single link and a
    /// byte bound above all it sends: replies to it come down the link past its full ring and
    /// wait in its backlog, its own input is paused (TCP pushes back on it), the link goes on,
    /// and 20 ping-pong witnesses on the same link are all answered. Nobody is closed.
    func testANonReaderNeverStallsTheLinkItShares() throws {
        let (coreGateway, core) = try startCore()
        let access = try startAccess(upstream: [coreGateway.port]) {
            $0.upstreamLinks = 1
            $0.maxQueuedBytes = 64 << 20
        }
        waitFor("link up") { access.stats().linksUp == 1 }
        let stuck = try TestClient(port: access.port, timeoutSeconds: 2, receiveBuffer: 4096)
        let big = TestClient.frame(seq: 1, bodySize: 60_000)
        let writer = stuck
        let sender = Thread { for _ in 0..<150 { if (try? writer.send(big)) == nil { break } } }
        sender.start()
        // More replies came down for it than its ring and socket hold (the rest wait in its
        // backlog, and its own input is paused): the old rule paused the link here.
        waitFor("the non-reader's replies pass its ring") {
            access.stats().forwardedDown >= UInt64(access.config.ringCapacity + 8)
        }
        let witnesses = try (0..<20).map { _ in try TestClient(port: access.port) }
        for round in 0..<20 {
            for (i, w) in witnesses.enumerated() {
                let request = TestClient.frame(seq: UInt32(round), uid: UInt32(i), bodySize: 64)
                XCTAssertTrue(w.echoes(request), "witness \(i), round \(round)")
            }
        }
        // A release build ends a value's life at its last use: the sockets must be open at these counts.
        withExtendedLifetime((stuck, witnesses)) {
            let stats = access.stats()
            XCTAssertEqual(stats.linkCloses, 0, "the link was never closed")
            XCTAssertEqual(stats.linksUp, 1)
            XCTAssertEqual(core.closed, 0, "the core lost no session")
            XCTAssertEqual(stats.closes.reduce(0, +), 0, "nobody was closed")
        }
    }

    /// A core bursts 10,000 pushes to a uid whose three devices read at full speed: every
    /// device gets all of them, in order, and none is closed or dropped.
    func testABurstOfTenThousandPushesReachesEveryDeviceInOrder() throws {
        let (coreGateway, core) = try startPushCore()
        let access = try startAccess(upstream: [coreGateway.port])
        waitFor("links up") { access.stats().linksUp == 2 }
        let devices = try (0..<3).map { _ in try TestClient(port: access.port) }
        for d in devices { send(d, 10, PushCore.u32(42)) }
        let control = try TestClient(port: access.port)
        let count = 10_000
        let payload = [UInt8](repeating: 0x42, count: 40)
        let received = devices.map { _ in AtomicInt() }  // atomics: ThreadSanitizer sees them
        let failures = Failures()
        let readers = devices
        let done = DispatchGroup()
        for (i, _) in devices.enumerated() {
            DispatchQueue.global().async(group: done) {
                for expected in 0..<count {
                    guard let f = readers[i].receiveFrame() else { return failures.add("device \(i): nothing at \(expected)") }
                    let h = f.withUnsafeBytes { FrameHeader(decoding: $0.baseAddress!) }
                    guard h.cmd == PushCore.pushedCmd, h.seq == UInt32(expected), Array(f[FrameHeader.size...]) == payload
                    else { return failures.add("device \(i): push \(expected) was seq \(h.seq) cmd \(h.cmd)") }
                    _ = received[i].add()
                }
            }
        }
        send(control, 23, PushCore.u32(UInt32(count)) + PushCore.scoped(.uid, 42, payload))
        XCTAssertEqual(done.wait(timeout: .now() + 60), .success, "the devices read every push")
        failures.assertNone("burst")
        XCTAssertEqual(received.map { $0.load() }, [count, count, count])
        XCTAssertEqual(core.refusedPushes.load(), 0, "the core's links took the whole burst")
        // Open to the counts: release builds end a value's life at its last use.
        let stats = withExtendedLifetime((devices, control)) { access.stats() }
        XCTAssertEqual(stats.pushDeliveries, UInt64(3 * count))
        XCTAssertEqual(stats.pushDropped + stats.pushOverflowCloses + stats.pushDroppedClosing, 0)
        XCTAssertEqual(stats.closes.reduce(0, +), 0, "nobody was closed")
        for (i, d) in devices.enumerated() { XCTAssertTrue(d.hasNoPush(), "device \(i): exactly once") }
    }

    /// 2,000 frames in one write, answered by the gateway itself and by a core through it,
    /// under both pollers: every reply arrives, in order, byte for byte.
    func testTwoThousandFramesPipelinedInOneWriteAreAllAnswered() throws {
        let (coreGateway, _) = try startCore()
        for poller in PollerKind.allCases {
            let local = try startGateway(poller, log: log)
            running.append(local)
            let forwarding = try startAccess(upstream: [coreGateway.port]) { $0.poller = poller }
            waitFor("links up") { forwarding.stats().linksUp == 2 }
            for (name, g) in [("handler", local), ("forwarding", forwarding)] {
                let client = try TestClient(port: g.port)
                XCTAssertTrue(pipelined(client, seqBase: 7, count: 2000), "\(poller) \(name)")
                withExtendedLifetime(client) {  // open to the counts: release builds end values at last use
                    XCTAssertEqual(g.stats().closes.reduce(0, +), 0, "\(poller) \(name)")
                }
            }
        }
    }

    /// Past max_queued_bytes a frame from the core closes the client as a slow consumer,
    /// counted, and a witness is served throughout.
    func testRepliesPastTheByteBoundCloseOnlyThatClient() throws {
        let (coreGateway, core) = try startPushCore()
        let access = try startAccess(upstream: [coreGateway.port]) {
            $0.maxFrame = 100_000
            $0.maxQueuedBytes = 200_000
        }
        waitFor("links up") { access.stats().linksUp == 2 }
        let stuck = try TestClient(port: access.port, timeoutSeconds: 2, receiveBuffer: 4096)
        // The core answers one request with 12 MB at once; the client reads nothing, and the kernel's
        // buffers take at most 4 MB (net.ipv4.tcp_wmem's ceiling): past the bound by construction.
        try stuck.send(PushCore.request(25, seq: 1, PushCore.u32(120) + PushCore.u32(100_000)))
        waitFor("closed as a slow consumer") { access.stats().closes(.slowConsumer) == 1 }
        XCTAssertEqual(access.stats().queueOverflowCloses, 1)
        XCTAssertTrue(stuck.isClosedByPeer())
        let witness = try TestClient(port: access.port)
        XCTAssertTrue(pipelined(witness, seqBase: 1, count: 50), "the witness is served")
        XCTAssertEqual(access.stats().linkCloses, 0)
        waitFor("the core hears CLOSED for it") { core.closedSessions.load() == 1 }
    }

    /// Each client under its own bound must not add up to more than the box holds: past three
    /// quarters of max_buffered_bytes a backed-up client's pushes are dropped (push_overflow drop),
    /// counted and reported to the core, before the gateway would stop reading everyone.
    func testBackedUpClientsTogetherStayUnderMaxBufferedBytes() throws {
        let (coreGateway, core) = try startPushCore()
        let access = try startAccess(upstream: [coreGateway.port]) {
            $0.maxQueuedBytes = 64 << 20
            $0.maxBufferedBytes = 8 << 20
            $0.pushOverflow = .drop
        }
        waitFor("links up") { access.stats().linksUp == 2 }
        let stuck = try TestClient(port: access.port, receiveBuffer: 4096)
        send(stuck, 10, PushCore.u32(11))
        let control = try TestClient(port: access.port)
        let payload = [UInt8](repeating: 0x33, count: 100_000)
        for _ in 0..<120 { send(control, 20, PushCore.scoped(.uid, 11, payload)) }  // 12 MB, under its own bound
        // Open to the counts: release builds end a value's life at its last use.
        let stats = withExtendedLifetime((stuck, control)) { access.stats() }
        XCTAssertGreaterThan(stats.pushDropped, 0, "dropped once the buffers passed three quarters")
        XCTAssertEqual(stats.pushDeliveries + stats.pushDropped, 120)
        XCTAssertLessThanOrEqual(stats.bufferedBytes, 8 << 20, "never past max_buffered_bytes")
        XCTAssertEqual(stats.sheddingSpells, 0, "nobody stopped being read")
        XCTAssertEqual(stats.closes.reduce(0, +), 0)
        waitFor("the core hears of the drops") { core.droppedPushes.load() == Int(stats.pushDropped) }
    }

    /// The core dies with requests in flight, under both pollers: each client that sent
    /// frames on the link gets one upstream_lost frame carrying the seq of its last one;
    /// a client that sent nothing gets nothing.
    func testACoreKilledWithRequestsInFlightTellsEachClient() throws {
        for poller in PollerKind.allCases {
            let (coreGateway, core) = try startSilentCore()
            let access = try startAccess(upstream: [coreGateway.port]) {
                $0.poller = poller
                $0.upstreamLinks = 1
            }
            waitFor("link up") { access.stats().linksUp == 1 }
            let clients = try (0..<10).map { _ in try TestClient(port: access.port) }
            for (i, c) in clients.enumerated() {
                var requests: [UInt8] = []
                for k in 0..<3 { requests += TestClient.frame(seq: UInt32(100 + i * 10 + k), bodySize: 32) }
                try c.send(requests)
            }
            let quiet = try TestClient(port: access.port)
            waitFor("the core holds every request") { core.frames.load() == 30 }
            coreGateway.stop()
            running.removeAll { $0 === coreGateway }
            waitFor("the link is down") { access.stats().linksUp == 0 }
            for (i, c) in clients.enumerated() {
                let before = try XCTUnwrap(c.framesBeforeHeartbeatEcho(), "\(poller): client \(i)")
                XCTAssertEqual(before.count, 1, "\(poller): client \(i) told once")
                let notice = before.first ?? []
                XCTAssertTrue(TestClient.isUpstreamLost(notice), "\(poller): client \(i)")
                XCTAssertEqual(notice.withUnsafeBytes { FrameHeader(decoding: $0.baseAddress!).seq },
                               UInt32(100 + i * 10 + 2), "\(poller): the seq of its last frame")
            }
            XCTAssertEqual(quiet.framesBeforeHeartbeatEcho()?.count, 0, "\(poller): a client that sent nothing")
            XCTAssertEqual(access.stats().upstreamLostNotices, 10)
            // A release build ends the clients' lives at their last use, closing them before this count.
            withExtendedLifetime((clients, quiet)) {
                XCTAssertEqual(access.stats().closes.reduce(0, +), 0, "\(poller): nobody closed")
            }
            tearDown()
        }
    }

    /// A PUSH and a DATA whose client frame is exactly max_frame pass access alone and
    /// aggregation + access; a PUSH longer than a lower node takes is dropped where it is
    /// routed, counted, and the links stay up.
    func testAFrameOfExactlyMaxFramePassesTwoAndThreeTiers() throws {
        // Links are checked to stay up: their heartbeat deadlines are set far beyond what a loaded machine
        // may stall a debug build moving megabyte frames through three tiers (it missed 1 s ones at load 30).
        let slowBeats = { (c: inout GatewayConfig) in c.linkHeartbeatMilliseconds = 10_000 }
        let (coreGateway, _) = try startPushCore()
        let aggregation = try startAggregation(upstream: [coreGateway.port], slowBeats)
        waitFor("aggregation up") { aggregation.stats().linksUp == 2 }
        let direct = try startAccess(upstream: [coreGateway.port]) {
            slowBeats(&$0)
            $0.nodeID = 1
        }
        let behind = try startAccess(upstream: [aggregation.port]) {
            slowBeats(&$0)
            $0.nodeID = 2
        }
        let small = try startAccess(upstream: [aggregation.port]) {
            slowBeats(&$0)
            $0.nodeID = 3
            $0.maxFrame = 64 << 10
        }
        waitFor("access links up") { direct.stats().linksUp == 2 && behind.stats().linksUp == 2 && small.stats().linksUp == 2 }
        let maxFrame = GatewayConfig().maxFrame
        // Every push fans out to the small node too, which takes none this long: one drop each.
        var drops: UInt64 = 0
        for (name, g) in [("access -> core", direct), ("access -> aggregation -> core", behind)] {
            let client = try TestClient(port: g.port, timeoutSeconds: 10)
            send(client, 10, PushCore.u32(5))
            let control = try TestClient(port: g.port)
            send(control, 24, PushCore.scoped(.uid, 5, PushCore.u32(UInt32(maxFrame))))
            let push = try XCTUnwrap(client.receiveFrame(), name)
            XCTAssertEqual(push.count, maxFrame, "\(name): a PUSH of exactly max_frame")
            XCTAssertEqual(Array(push[FrameHeader.size..<(FrameHeader.size + 300)]), (0..<300).map { UInt8($0 % 251) })
            let data = TestClient.frame(seq: 77, cmd: 1, bodySize: maxFrame - FrameHeader.size)
            XCTAssertEqual(client.exchange(data, expect: data.count), data, "\(name): a DATA of exactly max_frame")
            send(client, 13, [])  // unbind: the next push goes to the small node's client only
            drops += 1
            waitFor("\(name): dropped for the small node") { aggregation.stats().tooLargeDrops == drops }
        }
        let limited = try TestClient(port: small.port)
        send(limited, 10, PushCore.u32(6))
        let control = try TestClient(port: behind.port)
        send(control, 24, PushCore.scoped(.uid, 6, PushCore.u32(UInt32(maxFrame))))
        waitFor("too long for the small node: dropped at the aggregation server") {
            aggregation.stats().tooLargeDrops == drops + 1
        }
        XCTAssertTrue(limited.hasNoPush())
        let tooLong = TestClient.frame(seq: 5, cmd: 1, bodySize: (64 << 10) - FrameHeader.size)
        XCTAssertEqual(limited.exchange(tooLong, expect: tooLong.count), tooLong, "its own max_frame passes")
        for g in [direct, behind, small, aggregation] {
            XCTAssertEqual(g.stats().linkCloses, 0)
            XCTAssertEqual(g.stats().linkMalformed, 0)
        }
    }

    /// A client frame longer than the upstream server takes (its HELLO's max_frame) is answered
    /// too_large at the access node and never sent; the link stays up.
    func testAFrameLongerThanTheCoreTakesIsAnsweredTooLarge() throws {
        let (coreGateway, _) = try startPushCore()
        let aggregation = try startAggregation(upstream: [coreGateway.port]) { $0.maxFrame = 64 << 10 }
        waitFor("aggregation up") { aggregation.stats().linksUp == 2 }
        let access = try startAccess(upstream: [aggregation.port])
        waitFor("links up") { access.stats().linksUp == 2 }
        let client = try TestClient(port: access.port)
        try client.send(TestClient.frame(seq: 9, uid: 4, bodySize: 100_000))
        let answer = try XCTUnwrap(client.receiveFrame())
        let h = answer.withUnsafeBytes { FrameHeader(decoding: $0.baseAddress!) }
        XCTAssertEqual(h.status, GatewayStatus.tooLarge)
        XCTAssertEqual(h.seq, 9)
        XCTAssertEqual(access.stats().tooLargeReplies, 1)
        XCTAssertTrue(pipelined(client, seqBase: 10, count: 5), "served on")
        XCTAssertEqual(aggregation.stats().linkMalformed + access.stats().linkCloses, 0)
    }

    /// A core built on LinkCore whose lower side stops reading its link while the core
    /// bursts pushes: the link waits in the core's queue and is not closed; every push
    /// arrives once the lower side reads again.
    func testLinkCoreKeepsALinkWhoseLowerSideStopsReading() throws {
        let (coreGateway, core) = try startPushCore()
        let raw = try TestClient(port: coreGateway.port, timeoutSeconds: 10, receiveBuffer: 4096)
        try raw.send(LinkMessage.hello(.init(role: .access, node: 9, link: 0, heartbeatMilliseconds: 60_000)).bytes)
        let access = try startAccess(upstream: [coreGateway.port])
        waitFor("links up") { access.stats().linksUp == 2 }
        let control = try TestClient(port: access.port)
        let count = 3000
        // To a uid nobody holds: the access node delivers it to nobody, the raw link gets every one.
        send(control, 23, PushCore.u32(UInt32(count)) + PushCore.scoped(.uid, 999, [UInt8](repeating: 1, count: 1000)))
        XCTAssertEqual(core.refusedPushes.load(), 0)
        guard case .hello(let answer)? = raw.receiveFrame().flatMap(decodeLink) else { return XCTFail("no HELLO") }
        XCTAssertEqual(answer.status, 0)
        for n in 0..<count {
            guard case .push(let tree, _)? = raw.receiveFrame().flatMap(decodeLink) else {
                return XCTFail("push \(n) missing")
            }
            XCTAssertEqual(tree.target, 999)
        }
        XCTAssertEqual(coreGateway.stats().closes.reduce(0, +), 0, "the core closed no link")
    }

    /// A core that takes 200 ms per request, 64 in flight, heartbeats every 500 ms: every request is
    /// answered and no link is closed. A core that slept 200 ms per request on the thread that reads
    /// its links would be silent for 12.8 s, far past 3 heartbeats; this one answers them meanwhile.
    func testASlowCoreIsNotADeadOne() throws {
        let (coreGateway, core) = try startCore(delayMicroseconds: 200_000)
        let access = try startAccess(upstream: [coreGateway.port]) { $0.linkHeartbeatMilliseconds = 500 }
        waitFor("links up") { access.stats().linksUp == 2 }
        let clients = try (0..<4).map { _ in try TestClient(port: access.port) }
        for round in 0..<3 {
            for (i, c) in clients.enumerated() {
                XCTAssertTrue(pipelined(c, seqBase: UInt32(round * 1000 + i * 100), count: 16), "client \(i)")
            }
        }
        XCTAssertEqual(core.dataFrames.load(ordering: .relaxed), 3 * 64)
        XCTAssertEqual(access.stats().linkCloses, 0, "no link closed")
        XCTAssertEqual(access.stats().linksUp, 2)
    }

    // MARK: helpers

    private func decodeLink(_ frame: [UInt8]) -> LinkMessage? {
        frame.withUnsafeBytes { try? LinkMessage.decode($0.baseAddress!, maxFrame: GatewayConfig().maxFrame).get() }
    }

    /// A core that takes every request and answers none (counted), until it is stopped.
    private func startSilentCore() throws -> (Gateway, SilentCore) {
        let core = SilentCore()
        return (try startCoreServer(core), core)
    }

    /// A core that counts what reaches it and answers nothing (TransportShapesTests uses it too).
    final class SilentCore: CoreHandler, @unchecked Sendable {  // `frames` is atomic
        let frames = AtomicInt()
        func opened(_ session: CoreSession, peer: PeerAddress) {}
        func closed(_ session: CoreSession, cause: UInt8) {}
        func received(_ frame: Frame, clientFrame: UnsafeRawBufferPointer, from session: CoreSession) {
            _ = frames.add()
        }
    }
}
