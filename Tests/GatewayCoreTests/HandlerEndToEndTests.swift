import Foundation
import Glibc
import XCTest
@_spi(Benchmarks) @testable import GatewayCore

/// A handler that records every callback and acts on a few command ids:
/// 10 replies (status 7, body "abc"), sends an extra frame and closes;
/// 20 pushes a frame to the first connection it saw open (another connection);
/// anything else is echoed.
final class RecordingHandler: GatewayHandler, @unchecked Sendable {  // state behind `state`
    struct Record {
        var opened = 0
        var closed = 0
        var causes: [CloseCause] = []
        var frames: [UInt16] = []
    }

    struct State {
        var records: [ConnectionID: Record] = [:]
        var order: [ConnectionID] = []
        var stored: Connection?
        var closedOutOfOrder = 0
    }

    private let lock = NSLock()
    private var stateValue = State()

    private func withState<T>(_ body: (inout State) -> T) -> T {
        lock.lock()
        defer { lock.unlock() }
        return body(&stateValue)
    }
    /// Sent from `closed`: a handle that has closed must not deliver it anywhere.
    var sendFromClosed = false
    static let goodbyeCmd: UInt16 = 0x0BAD

    func opened(_ connection: Connection) {
        withState {
            if $0.records[connection.id] != nil { $0.closedOutOfOrder += 1 }
            $0.records[connection.id, default: Record()].opened += 1
            $0.order.append(connection.id)
            if $0.stored == nil { $0.stored = connection }
        }
    }

    func received(_ frame: Frame, on connection: Connection) {
        let target = withState {
            $0.records[connection.id, default: Record()].frames.append(frame.header.cmd)
            return $0.stored
        }
        switch frame.header.cmd {
        case 10:
            let body: [UInt8] = Array("abc".utf8)
            body.withUnsafeBytes { connection.reply(to: frame, status: 7, body: $0) }
            let extra: [UInt8] = [1, 2, 3, 4, 5]
            extra.withUnsafeBytes {
                connection.send(FrameHeader(length: 0, seq: 999, cmd: 11, status: 0, uid: frame.header.uid), body: $0)
            }
            connection.close()
        case 20:
            if let target, target.id != connection.id {
                target.send(FrameHeader(length: 0, seq: frame.header.seq, cmd: 21, uid: frame.header.uid), body: frame.body)
            }
            connection.reply(to: frame)
        default:
            connection.forward(frame)
        }
    }

    func closed(_ connection: Connection, cause: CloseCause) {
        withState {
            if $0.records[connection.id] == nil { $0.closedOutOfOrder += 1 }
            $0.records[connection.id, default: Record()].closed += 1
            $0.records[connection.id, default: Record()].causes.append(cause)
        }
        if sendFromClosed {
            connection.send(FrameHeader(length: 0, seq: 0xDEAD, cmd: Self.goodbyeCmd, uid: 0xDEAD))
        }
    }

    var snapshot: State { withState { $0 } }
}

final class HandlerEndToEndTests: XCTestCase {
    /// cmd 0xFF01 comes back identical from the gateway itself; the handler never sees it.
    func testHeartbeatIsAnsweredByTheGatewayAndNeverReachesTheHandler() throws {
        for poller in PollerKind.allCases {
            let handler = RecordingHandler()
            let gateway = try startGateway(poller, handler: handler)
            let client = try TestClient(port: gateway.port)
            for i in 0..<20 {
                let beat = TestClient.frame(seq: UInt32(i), cmd: ReservedCommand.heartbeat, status: UInt32(i), uid: 0x77,
                                            body: [UInt8](repeating: UInt8(i), count: i * 3))
                XCTAssertTrue(client.echoes(beat), "\(poller): heartbeat \(i) answered identically")
                XCTAssertTrue(client.echoes(TestClient.frame(seq: UInt32(100 + i), cmd: 1, bodySize: i)), "\(poller): app frame \(i)")
            }
            // Pipelined mixture in one send: replies in order.
            var stream: [UInt8] = []
            var frames: [[UInt8]] = []
            for i in 0..<50 {
                let f = TestClient.frame(seq: UInt32(1000 + i), cmd: i % 2 == 0 ? ReservedCommand.heartbeat : 3, bodySize: i)
                frames.append(f)
                stream += f
            }
            XCTAssertEqual(client.exchange(stream, expect: stream.count), stream, "\(poller): mixed pipeline")
            client.close()
            gateway.stop()
            let state = handler.snapshot
            let cmds = state.records.values.flatMap(\.frames)
            XCTAssertFalse(cmds.contains(ReservedCommand.heartbeat), "\(poller): the handler saw a heartbeat")
            XCTAssertEqual(cmds.count, 20 + 25, "\(poller): the handler saw every application frame")
        }
    }

    /// reply(to:status:body:), send and close(): both replies arrive in order,
    /// then the connection closes; frames after close() are not delivered;
    /// opened and closed are called once each per connection.
    func testReplySendAndCloseFromAHandler() throws {
        for poller in PollerKind.allCases {
            let handler = RecordingHandler()
            let gateway = try startGateway(poller, handler: handler)
            let witness = try TestClient(port: gateway.port)
            XCTAssertTrue(witness.echoes(TestClient.frame(seq: 1, bodySize: 10)))
            for k in 0..<5 {
                let client = try TestClient(port: gateway.port)
                XCTAssertTrue(client.echoes(TestClient.frame(seq: 1, bodySize: 4)), "\(poller) \(k)")
                // The closing request, then a frame in the same send that must never be dealt.
                try client.send(TestClient.frame(seq: 42, cmd: 10, uid: UInt32(500 + k), bodySize: 6) + TestClient.frame(seq: 43, cmd: 12, bodySize: 2))
                let reply = TestClient.frame(seq: 42, cmd: 10, status: 7, uid: UInt32(500 + k), body: Array("abc".utf8))
                let extra = TestClient.frame(seq: 999, cmd: 11, uid: UInt32(500 + k), body: [1, 2, 3, 4, 5])
                XCTAssertEqual(client.receiveFrame(), reply, "\(poller) \(k): reply(to:status:body:)")
                XCTAssertEqual(client.receiveFrame(), extra, "\(poller) \(k): send")
                XCTAssertTrue(client.isClosedByPeer(), "\(poller) \(k): closed after the replies")
                XCTAssertTrue(witness.echoes(TestClient.frame(seq: UInt32(k + 2), bodySize: 10)), "\(poller) \(k): witness")
            }
            XCTAssertTrue(waitUntil { gateway.stats().closes(.handler) == 5 }, "\(poller): closes \(gateway.stats().closes)")
            // A few connections that close themselves, and the witness.
            for _ in 0..<3 {
                let c = try TestClient(port: gateway.port)
                XCTAssertTrue(c.echoes(TestClient.frame(seq: 9, bodySize: 9)))
            }
            witness.close()
            XCTAssertTrue(waitUntil { handler.snapshot.records.values.allSatisfy { $0.closed == 1 } && handler.snapshot.records.count == 9 },
                          "\(poller): every connection's closed callback")
            gateway.stop()
            let state = handler.snapshot
            XCTAssertEqual(state.records.count, 9, "\(poller): 9 connections opened")
            XCTAssertEqual(state.closedOutOfOrder, 0, "\(poller): closed before opened, or opened twice")
            for (id, r) in state.records {
                XCTAssertEqual(r.opened, 1, "\(poller) \(id): opened")
                XCTAssertEqual(r.closed, 1, "\(poller) \(id): closed")
                XCTAssertFalse(r.frames.contains(12), "\(poller) \(id): a frame after close() was delivered")
            }
            XCTAssertEqual(state.records.values.filter { $0.causes == [.handler] }.count, 5, "\(poller)")
            assertEveryCloseCounted(gateway, "\(poller)")
        }
    }

    /// A handler may send to another connection (a push); the frame arrives there.
    func testSendToAnotherConnection() throws {
        for poller in PollerKind.allCases {
            let handler = RecordingHandler()
            let gateway = try startGateway(poller, handler: handler)
            let first = try TestClient(port: gateway.port)
            XCTAssertTrue(first.echoes(TestClient.frame(seq: 1, bodySize: 1)))
            let second = try TestClient(port: gateway.port)
            for i in 0..<10 {
                let body = [UInt8](repeating: UInt8(i), count: i * 10)
                try second.send(TestClient.frame(seq: UInt32(i), cmd: 20, uid: 3, body: body))
                XCTAssertEqual(second.receiveFrame(), TestClient.frame(seq: UInt32(i), cmd: 20, uid: 3, body: []), "\(poller): reply \(i)")
                XCTAssertEqual(first.receiveFrame(), TestClient.frame(seq: UInt32(i), cmd: 21, uid: 3, body: body), "\(poller): push \(i)")
            }
            gateway.stop()
        }
    }

    /// The handle passed to `closed` "no longer sends": a frame sent through it
    /// must not reach any other connection.
    func testHandleOfAClosedConnectionSendsNothing() throws {
        for poller in PollerKind.allCases {
            let handler = RecordingHandler()
            handler.sendFromClosed = true
            let gateway = try startGateway(poller, handler: handler)
            let witness = try TestClient(port: gateway.port)
            XCTAssertTrue(witness.echoes(TestClient.frame(seq: 1, bodySize: 10)))
            for k in 0..<10 {
                let c = try TestClient(port: gateway.port)
                XCTAssertTrue(c.echoes(TestClient.frame(seq: UInt32(k), bodySize: 3)))
                c.close()
                XCTAssertTrue(waitUntil { handler.snapshot.records.values.filter { $0.closed == 1 }.count == k + 1 }, "\(poller): closed \(k)")
                // The next connection dealt with must get only its own reply.
                let f = TestClient.frame(seq: UInt32(100 + k), bodySize: 7)
                try witness.send(f)
                let got = witness.receiveFrame()
                XCTAssertEqual(got, f, "\(poller) round \(k): the witness got \(got.map { "cmd \(FrameHeader(decoding: $0).cmd) seq \(FrameHeader(decoding: $0).seq)" } ?? "nothing") instead of its echo")
                if got != f { break }
            }
            gateway.stop()
        }
    }
}

private extension FrameHeader {
    init(decoding bytes: [UInt8]) { self = bytes.withUnsafeBytes { FrameHeader(decoding: $0.baseAddress!) } }
}
