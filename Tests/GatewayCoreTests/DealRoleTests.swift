import XCTest
@_spi(Benchmarks) @testable import GatewayCore

/// Deal's three roles (Threads/DealRole.swift), each driven through Deal's turn on a DealBench:
/// what a role does with a frame, read off the rings it writes.
final class DealRoleTests: XCTestCase {
    private typealias Bench = DealBench

    // MARK: handler

    private final class Recorder: GatewayHandler {
        var openings = 0
        var commands: [UInt16] = []

        func opened(_ connection: Connection) { openings += 1 }

        func received(_ frame: Frame, on connection: Connection) {
            commands.append(frame.header.cmd)
            connection.reply(to: frame, status: 7)
        }
    }

    func testTheHandlerRoleCallsTheHandlerAndAnswersHeartbeatsItself() throws {
        let recorder = Recorder()
        let bench = try Bench(handler: recorder)
        guard case .handler = bench.deal.role else { return XCTFail("no upstream: the handler role") }
        let client = try bench.open(.client)
        bench.arrive(Bench.frame(cmd: 0x10, seq: 1) + Bench.frame(cmd: ReservedCommand.heartbeat, seq: 2)
                     + Bench.frame(cmd: 0x11, seq: 3, body: [1, 2, 3]), on: client)
        bench.dealTurn(client)
        XCTAssertEqual(recorder.openings, 1)
        XCTAssertEqual(recorder.commands, [0x10, 0x11], "the heartbeat never reaches the handler")
        let replies = bench.sent(client).map(Bench.header)
        XCTAssertEqual(replies.map(\.seq), [1, 2, 3])
        XCTAssertEqual(replies.map(\.status), [7, 0, 7], "the heartbeat goes back as it came")
        XCTAssertEqual(bench.table.receiveRing(client.index).count, 0, "every frame dealt")
        bench.arrive(Bench.frame(cmd: 0x12, seq: 4), on: client)
        bench.dealTurn(client)
        XCTAssertEqual(recorder.openings, 1, "opened once")
        XCTAssertEqual(recorder.commands.last, 0x12)
    }

    // MARK: access

    /// A node of `role` with one link to one upstream server; the link's slot is open and has had
    /// its first turn, which put the node's HELLO on its send ring.
    private func forwardingBench(_ role: GatewayRole, node: UInt32) throws -> (Bench, link: ConnectionID) {
        let bench = try Bench { config in
            config.role = role
            config.upstream = [.init(host: "127.0.0.1", port: 9)]
            config.upstreamLinks = 1
        }
        let uplinks = try XCTUnwrap(bench.deal.uplinks)
        uplinks.node = node
        let link = try bench.open(.uplink)
        bench.dealTurn(link)
        let hello = try XCTUnwrap(Bench.hello(bench.sent(link).first), "the node's HELLO")
        XCTAssertEqual(hello.role, role == .access ? NodeRole.access.rawValue : NodeRole.aggregation.rawValue)
        XCTAssertEqual(hello.node, node)
        return (bench, link)
    }

    /// An access node, node 7.
    private func accessBench() throws -> (Bench, link: ConnectionID) {
        let (bench, link) = try forwardingBench(.access, node: 7)
        guard case .access = bench.deal.role else { throw Bench.Unexpected.role }
        return (bench, link)
    }

    /// The core answers the link's HELLO: the link is up.
    private func bringUp(_ link: ConnectionID, _ bench: Bench, node: UInt32 = 1) {
        bench.arrive(Bench.link(.hello(.init(role: .core, node: node, link: 0, heartbeatMilliseconds: 1000))),
                     on: link)
        bench.dealTurn(link)
    }

    func testTheAccessRoleAnswersNoUpstreamUntilALinkIsUpThenForwardsUpIt() throws {
        let (bench, link) = try accessBench()
        let client = try bench.open(.client)
        bench.arrive(Bench.frame(cmd: 0x20, seq: 1), on: client)
        bench.dealTurn(client)
        let refused = bench.sent(client).map(Bench.header)
        XCTAssertEqual(refused.map(\.status), [GatewayStatus.noUpstream])
        XCTAssertEqual(refused.map(\.seq), [1])
        XCTAssertEqual(bench.counter(.noUpstreamReplies), 1)

        bringUp(link, bench)
        XCTAssertEqual(bench.counter(.linksUp), 1)
        let request = Bench.frame(cmd: 0x20, seq: 2, body: Array("hello".utf8))
        bench.arrive(request, on: client)
        bench.dealTurn(client)
        XCTAssertTrue(bench.sent(client).isEmpty, "nothing answered here")
        let up = bench.sent(link)
        XCTAssertEqual(up.count, 2, "OPENED, then DATA")
        let session = SessionID(node: 7, connection: client)
        guard case .opened(let opened, _, _, _)? = up.first.flatMap(Bench.decode) else {
            return XCTFail("OPENED first")
        }
        XCTAssertEqual(opened, session)
        XCTAssertEqual(up.last.flatMap(Bench.decode), .data(session, clientFrameLength: UInt32(request.count)))
        XCTAssertEqual(up.last.map { Array($0[LinkMessage.dataOverhead...]) }, request, "the client frame, whole")
        XCTAssertEqual(bench.counter(.forwardedUp), 1)

        bench.arrive(Bench.frame(cmd: 0x20, seq: 3), on: client)
        bench.dealTurn(client)
        XCTAssertEqual(bench.sent(link).compactMap(Bench.decode).count, 1, "announced once: DATA alone")
    }

    func testAClientWaitsForRoomOnAFullLinkIsWokenByItAndIsAnsweredOverloadedPastMaxQueueWait() throws {
        let (bench, link) = try accessBench()
        bringUp(link, bench)
        let client = try bench.open(.client)
        bench.arrive(Bench.frame(cmd: 0x20, seq: 1), on: client)
        bench.dealTurn(client)
        XCTAssertEqual(bench.sent(link).count, 2)

        // The link's send ring is full but for two entries (less than a frame's room): the client waits.
        let ring = bench.table.sendRing(link.index)
        bench.fill(link, leaving: 2)
        bench.arrive(Bench.frame(cmd: 0x20, seq: 2), on: client)
        bench.dealTurn(client)
        let s = bench.table.slot(client.index)
        XCTAssertTrue(s.pointee.deal.waiting)
        XCTAssertEqual(bench.table.receiveRing(client.index).count, 1, "the frame stays until there is room")
        XCTAssertEqual(ring.freeCount, 2, "nothing went up")
        XCTAssertTrue(bench.sent(client).isEmpty)

        // Send wrote the link's ring: the link's turn wakes its waiter, whose frame then goes up.
        _ = bench.sent(link)
        XCTAssertEqual(ring.count, 0)
        bench.dealTurn(link)
        XCTAssertFalse(s.pointee.deal.waiting)
        bench.dealTurn(client)
        XCTAssertEqual(bench.sent(link).compactMap(Bench.decode).map { if case .data = $0 { 1 } else { 0 } }, [1])
        XCTAssertEqual(bench.table.receiveRing(client.index).count, 0)

        // Full again, and a waiter past max_queue_wait (1 s, 10 ticks of 100 ms) is answered overloaded.
        bench.fill(link, leaving: 2)
        bench.arrive(Bench.frame(cmd: 0x20, seq: 3), on: client)
        bench.dealTurn(client)
        XCTAssertTrue(s.pointee.deal.waiting)
        bench.deal.advanceTimers(to: 5)
        XCTAssertTrue(s.pointee.deal.waiting, "within max_queue_wait it still waits")
        bench.deal.advanceTimers(to: 11)
        XCTAssertFalse(s.pointee.deal.waiting)
        bench.dealTurn(client)
        let answers = bench.sent(client).map(Bench.header)
        XCTAssertEqual(answers.map(\.status), [GatewayStatus.overloaded])
        XCTAssertEqual(answers.map(\.seq), [3])
        XCTAssertEqual(bench.counter(.overloadedReplies), 1)
    }

    func testTheAccessRoleDeliversDownByOwnSessionIdAndDropsStaleOnes() throws {
        let (bench, link) = try accessBench()
        bringUp(link, bench)
        let (a, b) = (try bench.open(.client), try bench.open(.client))
        let answer = Bench.frame(cmd: 0x30, seq: 9, body: [4, 5])
        let stale = ConnectionID(index: b.index, generation: b.generation &+ 1)
        bench.arrive(Bench.link(.data(SessionID(node: 7, connection: b), clientFrameLength: UInt32(answer.count)),
                                inner: answer)
                     + Bench.link(.data(SessionID(node: 7, connection: stale), clientFrameLength: 18),
                                  inner: Bench.frame(cmd: 0x31, seq: 1))
                     + Bench.link(.data(SessionID(node: 8, connection: a), clientFrameLength: 18),
                                  inner: Bench.frame(cmd: 0x32, seq: 1)), on: link)
        bench.dealTurn(link)
        XCTAssertEqual(bench.sent(b), [answer], "the inner frame, to the session's connection")
        XCTAssertTrue(bench.sent(a).isEmpty, "another node's session is not this node's connection")
        XCTAssertEqual(bench.counter(.forwardedDown), 1)
        XCTAssertEqual(bench.counter(.staleDrops), 2)
    }

    // MARK: aggregation

    /// An aggregation server (node 50) with its upper link up.
    private func aggregationBench() throws -> (Bench, upper: ConnectionID) {
        let (bench, upper) = try forwardingBench(.aggregation, node: 50)
        guard case .aggregation = bench.deal.role else { throw Bench.Unexpected.role }
        bringUp(upper, bench)
        return (bench, upper)
    }

    /// A lower node's link says HELLO and is accepted.
    private func lowerLink(node: UInt32, _ bench: Bench) throws -> ConnectionID {
        let lower = try bench.open(.downlink)
        bench.arrive(Bench.link(.hello(.init(role: .access, node: node, link: 0, heartbeatMilliseconds: 1000))),
                     on: lower)
        bench.dealTurn(lower)
        let answer = try XCTUnwrap(Bench.hello(bench.sent(lower).first), "the answer to its HELLO")
        XCTAssertEqual(answer.status, LinkMessage.HelloStatus.accepted.rawValue)
        return lower
    }

    func testTheAggregationRoleRoutesDownByTheSessionsNodeAndUpUnchanged() throws {
        let (bench, upper) = try aggregationBench()
        let nine = try lowerLink(node: 9, bench)
        let ten = try lowerLink(node: 10, bench)
        XCTAssertEqual(bench.counter(.downlinksUp), 2)

        let client = ConnectionID(index: 3, generation: 1)
        let request = Bench.link(.data(SessionID(node: 9, connection: client), clientFrameLength: 18),
                                 inner: Bench.frame(cmd: 0x40, seq: 1))
        bench.arrive(request, on: nine)
        bench.dealTurn(nine)
        XCTAssertEqual(bench.sent(upper), [request], "up unchanged")
        XCTAssertEqual(bench.counter(.forwardedUp), 1)

        let toTen = Bench.link(.data(SessionID(node: 10, connection: client), clientFrameLength: 18),
                               inner: Bench.frame(cmd: 0x41, seq: 2))
        let toNine = Bench.link(.data(SessionID(node: 9, connection: client), clientFrameLength: 18),
                                inner: Bench.frame(cmd: 0x42, seq: 3))
        let toNobody = Bench.link(.data(SessionID(node: 11, connection: client), clientFrameLength: 18),
                                  inner: Bench.frame(cmd: 0x43, seq: 4))
        bench.arrive(toTen + toNine + toNobody, on: upper)
        bench.dealTurn(upper)
        XCTAssertEqual(bench.sent(ten), [toTen])
        XCTAssertEqual(bench.sent(nine), [toNine])
        XCTAssertEqual(bench.counter(.forwardedDown), 2)
        XCTAssertEqual(bench.counter(.staleDrops), 1, "no link of node 11")
    }

    func testALowerLinkSpeakingForAnotherNodeIsClosedAsMalformed() throws {
        let (bench, upper) = try aggregationBench()
        let nine = try lowerLink(node: 9, bench)
        bench.arrive(Bench.link(.data(SessionID(node: 10, connection: ConnectionID(index: 1, generation: 1)),
                                      clientFrameLength: 18), inner: Bench.frame(cmd: 0x40, seq: 1)), on: nine)
        bench.dealTurn(nine)
        XCTAssertTrue(bench.sent(upper).isEmpty, "nothing goes up")
        XCTAssertEqual(bench.table.slot(nine.index).endings.closeCause, .protocolError)
    }
}
