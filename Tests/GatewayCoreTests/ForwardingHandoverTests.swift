import Atomics
import Glibc
import XCTest
@testable import BinTestKit
@_spi(Benchmarks) @testable import GatewayCore
import LinkCore

/// A hot restart's hand-over of forwarding clients, in process, under both pollers (and ThreadSanitizer
/// in CI): gateway A (node 1) and gateway B (node 2) forward to one core; A's clients move to B with
/// their sessions (MOVE, docs/LINK.md), so the core keeps them: no CLOSED, no second OPENED, the uid
/// and rooms kept. Replies the core still held when the move began reach the client. And the
/// failures: a core that never answers MOVING (the client stays, served), and the link dying mid-move
/// (the client is told upstream_lost and moves as a new session).
final class ForwardingHandoverTests: XCTestCase {
    private let log = LogRecorder()


    private func access(_ node: UInt32, to corePort: Int, _ poller: PollerKind, waitForLinks: Bool = true) throws
        -> Gateway {
        let g = try startGateway(poller, log: log) {
            $0.upstream = [GatewayConfig.Upstream(host: "127.0.0.1", port: corePort)]
            $0.nodeID = node
        }
        if waitForLinks {
            XCTAssertTrue(waitUntil(seconds: 20) { g.stats().linksUp == 2 }, "node \(node)'s links are up")
        }
        return g
    }

    /// The core (running `handler`) and gateway A (node 1) forwarding to it, its links up.
    private func coreAndA(_ handler: CoreHandler, _ poller: PollerKind) throws
        -> (core: Gateway, server: CoreServer, a: Gateway) {
        let (core, server) = try startCore(handler, poller)
        do {
            return (core, server, try access(1, to: core.port, poller))
        } catch {
            core.stop()
            throw error
        }
    }

    /// A's clients quiesced (within `seconds`), then adopted by B (descriptors duplicated, as SCM_RIGHTS
    /// would); returns what travelled.
    private func handOver(from a: Gateway, to b: Gateway, within seconds: UInt64 = 20) -> [MovedConnection] {
        XCTAssertTrue(a.holdAccepting(true))
        let export = a.exportConnections()
        let batch = export.quiesce(upTo: 200, within: seconds * 1_000_000_000)
        XCTAssertTrue(export.isDone)
        var copies = batch.connections
        for i in copies.indices { copies[i].fd = dup(copies[i].fd) }
        export.handedOver(batch)
        b.adopt(copies)
        return batch.connections
    }

    private static func login(uid: UInt32, room: UInt32) -> [UInt8] {
        var body: [UInt8] = []
        for v in [uid, room] { withUnsafeBytes(of: v.bigEndian) { body += $0 } }
        return TestClient.frame(seq: 0, cmd: PushFrame.loginCmd, uid: uid, body: body)
    }

    /// 20 clients bound to a uid and a room, each with 5 requests held at the core when A hands them
    /// over (the core answers them only when MOVING comes, so they are held by construction): each
    /// gets its 5 replies in order, then B serves it under the same session.
    func testSessionsMoveWithRepliesHeldAtTheCore() throws {
        for poller in [PollerKind.epoll, .poll] {
            let core = HoldingCore()
            let (coreGateway, server, a) = try coreAndA(core, poller)
            defer { a.stop(); coreGateway.stop() }
            let b = try access(2, to: coreGateway.port, poller)
            defer { b.stop() }
            let clients = try (0..<20).map { _ in try TestClient(port: a.port) }
            for (i, c) in clients.enumerated() {
                let login = Self.login(uid: 1000 + UInt32(i), room: 7)
                XCTAssertEqual(c.exchange(login, expect: login.count), login, "logged in (\(poller))")
            }
            var requests: [[UInt8]] = []
            for (i, c) in clients.enumerated() {
                let five = (1...5).map { TestClient.frame(seq: UInt32($0), uid: UInt32(i), bodySize: 10 + i) }
                try c.send(five.flatMap { $0 })
                requests.append(five.flatMap { $0 })
            }
            // Every request is at the core, held, before the hand-over begins.
            XCTAssertTrue(waitUntil(seconds: 20) { core.held.load(ordering: .relaxed) == 20 * 5 }, "\(poller)")

            let moved = handOver(from: a, to: b)
            XCTAssertEqual(moved.count, 20, "every client moved (\(poller))")
            for (i, m) in moved.enumerated() {
                let session = try XCTUnwrap(m.session, "client \(i) carries its session (\(poller))")
                XCTAssertEqual(session.id.node, 1, "the old process's id (\(poller))")
                XCTAssertNotNil(session.uid, "\(poller)")
                XCTAssertEqual(session.rooms, [7], "\(poller)")
                XCTAssertEqual(m.input, [], "\(poller)")
            }
            for (i, c) in clients.enumerated() {
                XCTAssertEqual(c.receive(requests[i].count), requests[i], "the 5 held replies, in order (\(poller))")
                let next = TestClient.frame(seq: 6, bodySize: 33)
                XCTAssertEqual(c.exchange(next, expect: next.count), next, "B serves it through the core (\(poller))")
            }
            a.stop()
            // A's links are gone; its moved sessions live on at the core, on B's links.
            XCTAssertTrue(waitUntil(seconds: 20) { a.stats().linksUp == 0 }, "\(poller)")
            let more = TestClient.frame(seq: 7, bodySize: 5)
            XCTAssertEqual(clients[0].exchange(more, expect: more.count), more, "still served (\(poller))")
            XCTAssertEqual(core.opened.load(ordering: .relaxed), 20, "no second OPENED (\(poller))")
            XCTAssertEqual(core.closed.load(ordering: .relaxed), 0, "no CLOSED for a moved session (\(poller))")
            let moves = [core.moving.load(ordering: .relaxed), server.movedIn, server.movedUnknown, server.movesLost]
            XCTAssertEqual(moves, [20, 20, 0, 0], "\(poller)")
            XCTAssertEqual([a.stats().sessionsMovedOut, a.stats().movesUnanswered, a.stats().movesLinkLost],
                           [20, 0, 0], "\(poller)")
            XCTAssertEqual([b.stats().sessionsMovedIn, b.stats().sessionsBound, b.stats().memberships], [20, 20, 20],
                           "B holds each session's uid and room (\(poller))")
            XCTAssertEqual(a.stats().closes(.handedOver), 20, "\(poller)")
            for c in clients { c.close() }
            XCTAssertTrue(waitUntil(seconds: 20) { core.closed.load(ordering: .relaxed) == 20 },
                          "B's CLOSED under the old ids (\(poller))")
            XCTAssertEqual(server.movedUnknown, 0, "\(poller)")
        }
    }

    /// A core that never answers MOVING: the client is not quiet in time and stays with A, served (the
    /// drain would ask it to reconnect), counted unanswered and logged.
    func testAnUnansweredMovingKeepsTheClient() throws {
        for poller in [PollerKind.epoll, .poll] {
            let silent = SilentMoveCore()
            let (coreGateway, _, a) = try coreAndA(silent, poller)
            defer { a.stop(); coreGateway.stop() }
            let b = try access(2, to: coreGateway.port, poller)
            defer { b.stop() }
            let client = try TestClient(port: a.port)
            let first = TestClient.frame(seq: 1, bodySize: 9)
            XCTAssertEqual(client.exchange(first, expect: first.count), first, "\(poller)")

            XCTAssertEqual(handOver(from: a, to: b, within: 1).count, 0, "not quiet in time (\(poller))")
            XCTAssertEqual(silent.moving.load(ordering: .relaxed), 1, "\(poller)")
            let second = TestClient.frame(seq: 2, bodySize: 9)
            XCTAssertEqual(client.exchange(second, expect: second.count), second, "A serves it on (\(poller))")
            XCTAssertEqual(a.stats().movesUnanswered, 1, "\(poller)")
            let warnings = log.messages(atLeast: .warning)
            XCTAssertTrue(warnings.contains { $0.contains("did not answer MOVING") }, "\(poller)")
            XCTAssertEqual(a.stats().handedOver, 0, "\(poller)")
        }
    }

    /// The session's link dies while its MOVING waits: the core lost it, so the client is told
    /// upstream_lost (carried to B with its output) and moves without a session.
    func testTheLinkDyingMidMoveMovesTheClientAsNew() throws {
        for poller in [PollerKind.epoll, .poll] {
            let silent = SilentMoveCore()
            let (coreGateway, _, a) = try coreAndA(silent, poller)
            defer { a.stop(); coreGateway.stop() }
            let b = try access(2, to: coreGateway.port, poller, waitForLinks: false)
            defer { b.stop() }
            let client = try TestClient(port: a.port)
            let first = TestClient.frame(seq: 41, bodySize: 9)
            XCTAssertEqual(client.exchange(first, expect: first.count), first, "\(poller)")

            XCTAssertTrue(a.holdAccepting(true))
            let export = a.exportConnections()
            let quiesced = Locked<QuiescedBatch?>(nil)
            Thread { quiesced.withLock { $0 = export.quiesce(upTo: 200, within: 20_000_000_000) } }.start()
            XCTAssertTrue(waitUntil(seconds: 20) { silent.moving.load(ordering: .relaxed) == 1 }, "\(poller)")
            coreGateway.stop()
            XCTAssertTrue(waitUntil(seconds: 20) { quiesced.withLock { $0 != nil } }, "\(poller)")
            let batch = try XCTUnwrap(quiesced.withLock { $0 })
            XCTAssertEqual(batch.connections.count, 1, "it moves (\(poller))")
            var copies = batch.connections
            for i in copies.indices { copies[i].fd = dup(copies[i].fd) }
            export.handedOver(batch)
            b.adopt(copies)
            let m = try XCTUnwrap(batch.connections.first)
            XCTAssertNil(m.session, "the core no longer holds it (\(poller))")
            let notice = try XCTUnwrap(client.receiveFrame(), "\(poller)")
            let header = notice.withUnsafeBytes { FrameHeader(decoding: $0.baseAddress!) }
            XCTAssertEqual([UInt32(header.cmd), header.seq], [UInt32(ReservedCommand.upstreamLost), 41],
                           "upstream_lost with the last seq sent (\(poller))")
            XCTAssertEqual(a.stats().movesLinkLost, 1, "\(poller)")
            XCTAssertTrue(log.messages(atLeast: .warning).contains { $0.contains("died mid-move") }, "\(poller)")
        }
    }

    private func startCore(_ handler: CoreHandler, _ poller: PollerKind) throws -> (Gateway, CoreServer) {
        var base = GatewayConfig()
        base.port = 0
        base.poller = poller
        let server = CoreServer(handler: handler, node: 901, clientMaxFrame: base.maxFrame, logger: log.logger)
        let g = try Gateway(config: CoreServer.config(base, clientMaxFrame: base.maxFrame), handler: server,
                            logger: log.logger)
        try g.start()
        return (g, server)
    }
}

/// A core that echoes at once and never answers MOVING (a core that predates nothing, but stalls).
final class SilentMoveCore: CoreHandler {
    let moving = ManagedAtomic<Int>(0)
    func opened(_ session: CoreSession, peer: PeerAddress) {}
    func received(_ frame: Frame, clientFrame: UnsafeRawBufferPointer, from session: CoreSession) {
        session.echo(frame)
    }
    func closed(_ session: CoreSession, cause: UInt8) {}
    func moving(_ session: CoreSession) { moving.wrappingIncrement(ordering: .relaxed) }
}

/// A core that binds a LOGIN's uid and joins its room (echoing it at once), and holds every other frame
/// until its session is asked to move: then it echoes them all, and answers MOVING after them.
final class HoldingCore: CoreHandler {
    let opened = ManagedAtomic<Int>(0)
    let closed = ManagedAtomic<Int>(0)
    let moving = ManagedAtomic<Int>(0)
    let held = ManagedAtomic<Int>(0)
    /// Deal-owned: the frames held per session, and the sessions asked to move (answered at once since).
    private var frames: [SessionID: [[UInt8]]] = [:]
    private var released: Set<SessionID> = []

    func opened(_ session: CoreSession, peer: PeerAddress) { opened.wrappingIncrement(ordering: .relaxed) }
    func closed(_ session: CoreSession, cause: UInt8) { closed.wrappingIncrement(ordering: .relaxed) }

    func received(_ frame: Frame, clientFrame: UnsafeRawBufferPointer, from session: CoreSession) {
        let header = FrameHeader(decoding: clientFrame.baseAddress!)
        guard header.cmd != PushFrame.loginCmd else {
            session.bind(uid: PushFrame.loadU32(clientFrame.baseAddress!, FrameHeader.size))
            session.join(room: PushFrame.loadU32(clientFrame.baseAddress!, FrameHeader.size + 4))
            return session.echo(frame)
        }
        if released.contains(session.id) { return session.echo(frame) }
        frames[session.id, default: []].append(Array(clientFrame))
        held.wrappingIncrement(ordering: .relaxed)
    }

    func moving(_ session: CoreSession) {
        moving.wrappingIncrement(ordering: .relaxed)
        released.insert(session.id)
        for f in frames.removeValue(forKey: session.id) ?? [] {
            f.withUnsafeBytes { raw in
                session.send(FrameHeader(decoding: raw.baseAddress!),
                             body: UnsafeRawBufferPointer(rebasing: raw[FrameHeader.size...]))
            }
        }
        session.readyToMove()
    }
}
