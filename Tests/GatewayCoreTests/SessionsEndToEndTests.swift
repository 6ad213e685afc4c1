import Foundation
import Glibc
import Synchronization
import XCTest
@_spi(Benchmarks) @testable import GatewayCore

/// Users, rooms and push end to end (docs/LINK.md): the core binds, joins, pushes,
/// kicks and asks presence; the access nodes apply each tree-wide message once.
final class SessionsEndToEndTests: PushCoreTestCase {
    /// A uid with three devices on two access nodes behind one aggregation server: each
    /// device gets the push exactly once; another uid's device gets nothing; a push to a
    /// uid nobody holds is counted; presence counts the devices.
    func testPushToAUidOnTwoAccessNodesBehindAnAggregationServer() throws {
        let (coreGateway, core) = try startPushCore()
        let aggregation = try startAggregation(upstream: [coreGateway.port])
        waitFor("aggregation up") { aggregation.stats().linksUp == 2 }
        let a = try startAccess(upstream: [aggregation.port]) { $0.nodeID = 1 }
        let b = try startAccess(upstream: [aggregation.port]) { $0.nodeID = 2 }
        waitFor("access links up") { a.stats().linksUp == 2 && b.stats().linksUp == 2 }
        let devices = [try TestClient(port: a.port), try TestClient(port: a.port), try TestClient(port: b.port)]
        for d in devices { login(d, uid: 42) }
        let other = try TestClient(port: a.port)
        login(other, uid: 43)
        let control = try TestClient(port: b.port)
        XCTAssertEqual(a.stats().sessionsBound, 3)
        send(control, 22, PushCore.scoped(.uid, 42))
        waitFor("presence answered by both nodes") { core.answers.withLock { $0[42]?.nodes } == 2 }
        XCTAssertEqual(core.answers.withLock { $0[42]?.count }, 3)

        let payload = Array("to every device of 42".utf8)
        push(control, .uid, 42, payload)
        for (i, d) in devices.enumerated() { XCTAssertEqual(d.nextPush(), payload, "device \(i)") }
        for (i, d) in devices.enumerated() { XCTAssertTrue(d.hasNoPush(), "device \(i): exactly once") }
        XCTAssertTrue(other.hasNoPush(), "uid 43 got nothing")
        XCTAssertEqual(a.stats().pushDeliveries + b.stats().pushDeliveries, 3)
        XCTAssertGreaterThan(a.stats().duplicates + b.stats().duplicates + aggregation.stats().duplicates, 0,
                             "the core sent it on every link: the copies were dropped, counted")

        push(control, .uid, 77, Array("nobody".utf8))
        waitFor("an offline uid is counted, not an error") { a.stats().pushNobody == 1 && b.stats().pushNobody == 1 }
        XCTAssertEqual(a.stats().pushDeliveries + b.stats().pushDeliveries, 3)
        withExtendedLifetime((devices, other, control)) {  // release builds would close them at their last use
            XCTAssertEqual(a.stats().closes.reduce(0, +) + b.stats().closes.reduce(0, +), 0)
        }
    }

    /// A core answering each of many simultaneous logins with three link messages (BIND,
    /// JOIN, the echo) through a small send ring: Deal keeps room for a frame's replies,
    /// so the link is paused, never closed for it.
    func testABurstOfLoginsWithThreeRepliesEachKeepsTheLinks() throws {
        let (g, _) = try PushCore.start(log: log, ringCapacity: 8)
        running.append(g)
        let access = try startAccess(upstream: [g.port]) { $0.upstreamLinks = 1 }
        waitFor("link up") { access.stats().linksUp == 1 }
        let clients = try (0..<200).map { _ in try TestClient(port: access.port) }
        let requests = clients.indices.map { PushCore.request(14, seq: UInt32($0), PushCore.u32(UInt32($0 + 1))) }
        for (c, r) in zip(clients, requests) { try c.send(r) }
        for (i, (c, r)) in zip(clients, requests).enumerated() { XCTAssertEqual(c.receiveFrame(), r, "client \(i)") }
        XCTAssertEqual(access.stats().linkCloses, 0, "the core's link was never closed")
        // JOIN follows the echo: the last ones may still be on their way when the echoes are in.
        withExtendedLifetime(clients) {  // release builds would close them at their last use, unbinding them
            waitFor("every login bound and joined") {
                access.stats().sessionsBound == 200 && access.stats().memberships == 200
            }
        }
        XCTAssertEqual(g.stats().closes.reduce(0, +), 0)
    }

    /// KICK of a uid closes its sessions after what was queued (one session is kicked
    /// with CLOSED, ForwardingCloseTests); everyone else stays.
    func testKickAUid() throws {
        let (coreGateway, _) = try startPushCore()
        let access = try startAccess(upstream: [coreGateway.port])
        waitFor("links up") { access.stats().linksUp == 2 }
        let devices = try (0..<2).map { _ in try TestClient(port: access.port) }
        for d in devices { login(d, uid: 7) }
        let bystander = try TestClient(port: access.port)
        login(bystander, uid: 8)
        send(bystander, 21, PushCore.scoped(.uid, 7))
        // Its echo came after the KICK on the same link: the sessions left at the kick, not at their close.
        XCTAssertEqual(access.stats().sessionsBound, 1, "unbound at the kick")
        for (i, d) in devices.enumerated() { XCTAssertTrue(d.isClosedByPeer(), "device \(i) kicked") }
        waitFor("counted") { access.stats().closes(.kicked) == 2 }
        XCTAssertTrue(bystander.hasNoPush(), "the bystander is served")
        XCTAssertEqual(access.stats().sessionsBound, 1, "the kicked sessions were unbound")
    }

    /// Rooms while clients come and go: a push to the room reaches exactly its members
    /// at that moment; a broadcast (scope all) reaches every bound client once.
    func testRoomsAndBroadcastDuringChurn() throws {
        let (coreGateway, _) = try startPushCore()
        let access = try startAccess(upstream: [coreGateway.port])
        waitFor("links up") { access.stats().linksUp == 2 }
        let control = try TestClient(port: access.port)
        login(control, uid: 1)
        let stranger = try TestClient(port: access.port)  // never bound: not online, no broadcast
        var members: [TestClient] = []
        var outsiders: [TestClient] = [control]
        for round in 0..<4 {
            for n in 0..<5 {
                let c = try TestClient(port: access.port)
                login(c, uid: UInt32(100 + round * 10 + n))
                send(c, 11, PushCore.u32(5))
                members.append(c)
            }
            // Churn: one member leaves the room, one disconnects, a stranger connects and closes.
            let leaver = members.removeFirst()
            send(leaver, 12, PushCore.u32(5))
            outsiders.append(leaver)
            members.removeFirst().close()
            try TestClient(port: access.port).close()
            let payload = Array("room round \(round)".utf8)
            push(control, .room, 5, payload)
            for (i, m) in members.enumerated() { XCTAssertEqual(m.nextPush(), payload, "round \(round) member \(i)") }
            for (i, o) in outsiders.enumerated() { XCTAssertTrue(o.hasNoPush(), "round \(round) outsider \(i)") }
        }
        XCTAssertEqual(access.stats().rooms, 1)
        let expected = UInt64(members.count)
        waitFor("closed members left the room") { access.stats().memberships == expected }
        // The control client is one of everyone: its push and its echo may come in either order.
        seq += 1
        let request = PushCore.request(20, seq: seq, PushCore.scoped(.all, 0, Array("everyone".utf8)))
        try control.send(request)
        let two = [control.receiveFrame(), control.receiveFrame()].compactMap { $0 }
        XCTAssertEqual(Set(two), [request, TestClient.frame(seq: seq, cmd: PushCore.pushedCmd, uid: 0,
                                                              body: Array("everyone".utf8))])
        let everyone = members + outsiders.dropFirst()
        for (i, c) in everyone.enumerated() { XCTAssertEqual(c.nextPush(), Array("everyone".utf8), "client \(i)") }
        for (i, c) in (everyone + [control]).enumerated() { XCTAssertTrue(c.hasNoPush(), "client \(i): once") }
        XCTAssertTrue(stranger.hasNoPush(), "an unbound connection gets no broadcast")
    }

    /// Broadcasts while other clients connect and close on another thread: every steady
    /// client gets every broadcast exactly once, in order.
    func testBroadcastDuringChurn() throws {
        let (coreGateway, _) = try startPushCore()
        let access = try startAccess(upstream: [coreGateway.port])
        waitFor("links up") { access.stats().linksUp == 2 }
        let steady = try (0..<10).map { _ in try TestClient(port: access.port) }
        let control = try TestClient(port: access.port)
        for (i, c) in (steady + [control]).enumerated() { login(c, uid: UInt32(100 + i)) }  // bound: online
        let port = access.port
        let stop = Locked(false)
        let churned = Locked(0)
        let churn = Thread {
            while !stop.withLock({ $0 }) {
                guard let c = try? TestClient(port: port) else { continue }
                _ = c.echoes(TestClient.frame(seq: 1, cmd: ReservedCommand.heartbeat, bodySize: 0))
                c.close()
                churned.withLock { $0 += 1 }
            }
        }
        churn.start()
        let rounds = 300
        for n in 0..<rounds {
            seq += 1
            // The control client is a recipient too: its push and its echo come in either order.
            try control.send(PushCore.request(20, seq: seq, PushCore.scoped(.all, 0, PushCore.u32(UInt32(n)))))
            XCTAssertEqual([control.receiveFrame(), control.receiveFrame()].compactMap { $0 }.count, 2)
        }
        stop.withLock { $0 = true }
        while !churn.isFinished { usleep(1_000) }
        for (i, c) in steady.enumerated() {
            for n in 0..<rounds { XCTAssertEqual(c.nextPush(), PushCore.u32(UInt32(n)), "client \(i) push \(n)") }
            XCTAssertTrue(c.hasNoPush(), "client \(i): each once")
        }
        XCTAssertGreaterThan(churned.withLock { $0 }, 0, "clients came and went meanwhile")
        XCTAssertEqual(access.stats().closes(.slowConsumer), 0)
    }

    /// A push for a uid whose only session closed, after its slot went to a new
    /// connection, reaches nobody: bindings end with their connection.
    func testPushRacingTheCloseOfItsSessionNeverReachesTheSlotsNextConnection() throws {
        let (coreGateway, _) = try startPushCore()
        let access = try startAccess(upstream: [coreGateway.port]) { $0.maxConnections = 4 }
        waitFor("links up") { access.stats().linksUp == 2 }
        let control = try TestClient(port: access.port)
        for round in 0..<20 {
            let old = try TestClient(port: access.port)
            login(old, uid: 900)
            old.close()
            waitFor("slot freed") { access.stats().sessionsBound == 0 && access.stats().connectionsOpen == 3 }
            let next = try TestClient(port: access.port)  // 4 slots: two links, the control, this one
            push(control, .uid, 900, Array("late".utf8))
            XCTAssertTrue(next.hasNoPush(), "round \(round): the slot's next connection got nothing")
            next.close()
            waitFor("slot freed") { access.stats().connectionsOpen == 3 }
        }
        XCTAssertEqual(access.stats().pushDeliveries, 0)
        XCTAssertEqual(access.stats().pushNobody, 20)
    }

    /// auth_timeout: a client the core never binds is closed with its cause; a bound one stays.
    func testAuthTimeoutClosesClientsTheCoreDidNotBind() throws {
        let (coreGateway, _) = try startPushCore()
        let access = try startAccess(upstream: [coreGateway.port]) { $0.authTimeout = 1 }
        waitFor("links up") { access.stats().linksUp == 2 }
        let anonymous = try TestClient(port: access.port)
        let known = try TestClient(port: access.port)
        login(known, uid: 3)
        XCTAssertTrue(anonymous.isClosedByPeer(), "closed once auth_timeout passed")
        waitFor("counted when Deal finishes the close") { access.stats().closes(.authTimeout) == 1 }
        XCTAssertTrue(known.hasNoPush(), "the bound client is served")
    }

    /// push_overflow with a client that stops reading: `close` closes it as a slow
    /// consumer, `drop` skips it; both counted, and a witness is served throughout.
    func testPushOverflowPolicyBothWays() throws {
        for policy in PushOverflow.allCases {
            let (coreGateway, _) = try startPushCore()
            let access = try startAccess(upstream: [coreGateway.port]) {
                $0.pushOverflow = policy
                $0.ringCapacity = 4
            }
            waitFor("links up") { access.stats().linksUp == 2 }
            let stuck = try TestClient(port: access.port, receiveBuffer: 4096)
            login(stuck, uid: 11)
            let witness = try TestClient(port: access.port)
            let payload = [UInt8](repeating: 0x5A, count: 250_000)
            let pushes = 60  // 15 MB: more than the socket buffers and a 4-entry ring hold
            for _ in 0..<pushes { push(witness, .uid, 11, payload) }
            switch policy {
            case .close:
                waitFor("closed as a slow consumer") { access.stats().pushOverflowCloses >= 1 }
                waitFor("the close counted") { access.stats().closes(.slowConsumer) == 1 }
            case .drop:
                waitFor("skipped, counted") { access.stats().pushDropped > 0 }
                XCTAssertEqual(access.stats().closes(.slowConsumer), 0, "not closed")
                XCTAssertEqual(access.stats().pushDeliveries + access.stats().pushDropped, UInt64(pushes))
            }
            XCTAssertTrue(witness.hasNoPush(), "\(policy): the witness is served")
            tearDown()
        }
    }
}
