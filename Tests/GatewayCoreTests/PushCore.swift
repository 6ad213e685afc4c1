import Foundation
import XCTest
import Glibc
import Synchronization
@_spi(Benchmarks) @testable import GatewayCore
import LinkCore

/// A core for the users-and-push tests, driven by the clients' own frames (the
/// core's API runs on its Deal stage, so the tests reach it through a client):
///   10 LOGIN uid          binds the session to uid (body: u32)
///   11 JOIN room / 12 LEAVE room / 13 UNBIND / 14 LOGIN and JOIN (body: u32 for both)
///   20 PUSH scope target payload    pushes a frame of cmd 99, seq = the request's, body = payload
///   21 KICK scope target            22 PRESENCE scope target (answers summed per target)
///   23 BURST count scope target payload   `count` pushes back to back, seq 0..<count (the burst's own
///                                         echo comes after them)
///   24 SIZED scope target size            one push of exactly `size` bytes (body: bytes i % 251)
///   25 FLOOD count size                   `count` DATA frames of `size` bytes to the session, at once
/// Every request is echoed after it is acted on, so its echo follows the link messages it caused.
final class PushCore: CoreHandler, @unchecked Sendable {  // `answers` is Locked; the rest is Deal's
    static let pushedCmd: UInt16 = 99
    private(set) var server: CoreServer!
    let answers = Locked<[UInt32: (nodes: Int, count: Int)]>([:])
    /// PUSH_DROPPED notices heard and the pushes they count; pushes `push` refused; sessions closed.
    /// Atomics, which ThreadSanitizer sees (Synchronization's Mutex it cannot).
    let dropNotices = AtomicInt()
    let droppedPushes = AtomicInt()
    let refusedPushes = AtomicInt()
    let closedSessions = AtomicInt()

    static func start(log: LogRecorder, node: UInt32 = 1, ringCapacity: Int = 32) throws -> (Gateway, PushCore) {
        let core = PushCore()
        var base = GatewayConfig()
        base.port = 0
        base.tickMilliseconds = 10
        base.ringCapacity = ringCapacity
        let server = CoreServer(handler: core, node: node, clientMaxFrame: base.maxFrame, logger: log.logger)
        core.server = server
        let g = try Gateway(config: CoreServer.config(base, clientMaxFrame: base.maxFrame), handler: server,
                            logger: log.logger)
        try g.start()
        return (g, core)
    }

    func opened(_ session: CoreSession, peer: PeerAddress) {}
    func closed(_ session: CoreSession, cause: UInt8) { _ = closedSessions.add() }

    func received(_ frame: Frame, clientFrame: UnsafeRawBufferPointer, from session: CoreSession) {
        let header = FrameHeader(decoding: clientFrame.baseAddress!)
        let body = UnsafeRawBufferPointer(rebasing: clientFrame[FrameHeader.size...])
        func u32(_ at: Int) -> UInt32 { FrameHeader.loadU32(body.baseAddress!, at) }
        func scope() -> LinkMessage.Scope { LinkMessage.Scope(rawValue: body[0])! }
        switch header.cmd {
        case 10: session.bind(uid: u32(0))
        case 11: session.join(room: u32(0))
        case 12: session.leave(room: u32(0))
        case 13: session.unbind()
        case 14:  // LOGIN, echo, JOIN: three replies to one frame that cannot share a descriptor
            session.bind(uid: u32(0))
            session.echo(frame)
            session.join(room: u32(0))
            return
        case 20:
            server.push(scope(), target: u32(1), FrameHeader(length: 0, seq: header.seq, cmd: Self.pushedCmd,
                                                              uid: u32(1)),
                        body: UnsafeRawBufferPointer(rebasing: body[5...]))
        case 23:
            let count = u32(0)
            let target = FrameHeader.loadU32(body.baseAddress! + 5, 0)
            let scope = LinkMessage.Scope(rawValue: body[4])!
            for seq in 0..<count {
                if !server.push(scope, target: target, FrameHeader(length: 0, seq: seq, cmd: Self.pushedCmd, uid: target),
                                body: UnsafeRawBufferPointer(rebasing: body[9...])) {
                    _ = refusedPushes.add()
                }
            }
        case 24:
            let size = Int(u32(5))
            let payload = (0..<(size - FrameHeader.size)).map { UInt8($0 % 251) }
            let sent = payload.withUnsafeBytes {
                server.push(scope(), target: u32(1), FrameHeader(length: 0, seq: header.seq, cmd: Self.pushedCmd,
                                                                  uid: u32(1)), body: $0)
            }
            if !sent { _ = refusedPushes.add() }
        case 25:
            let filler = [UInt8](repeating: 0x25, count: Int(u32(4)) - FrameHeader.size)
            for n in 0..<u32(0) {
                filler.withUnsafeBytes {
                    _ = session.send(FrameHeader(length: 0, seq: n, cmd: Self.pushedCmd, uid: 0), body: $0)
                }
            }
        case 21: server.kick(scope(), target: u32(1))
        case 22: server.queryPresence(scope(), target: u32(1))
        default: break
        }
        session.echo(frame)
    }

    func pushesDropped(_ session: CoreSession, count: UInt32) {
        _ = dropNotices.add()
        _ = droppedPushes.add(Int(count))
    }

    func presence(_ query: LinkMessage.TreeWide, node: UInt32, count: UInt32) {
        answers.withLock { $0[query.target, default: (0, 0)] = ($0[query.target, default: (0, 0)].nodes + 1,
                                                                 $0[query.target, default: (0, 0)].count + Int(count)) }
    }

    // MARK: client side

    static func request(_ cmd: UInt16, seq: UInt32, _ body: [UInt8]) -> [UInt8] {
        TestClient.frame(seq: seq, cmd: cmd, uid: 0, body: body)
    }

    static func u32(_ v: UInt32) -> [UInt8] { withUnsafeBytes(of: v.bigEndian) { Array($0) } }

    static func scoped(_ scope: LinkMessage.Scope, _ target: UInt32, _ payload: [UInt8] = []) -> [UInt8] {
        [scope.rawValue] + u32(target) + payload
    }
}

/// The users-and-push tests' base: a PushCore per test, reached through clients' requests.
class PushCoreTestCase: ForwardingTestCase {
    var seq: UInt32 = 1

    func startPushCore() throws -> (Gateway, PushCore) {
        let (g, core) = try PushCore.start(log: log)
        running.append(g)
        return (g, core)
    }

    /// Sends a PushCore request and checks its echo, which comes after what it caused.
    func send(_ client: TestClient, _ cmd: UInt16, _ body: [UInt8], file: StaticString = #filePath, line: UInt = #line) {
        seq += 1
        XCTAssertTrue(client.echoes(PushCore.request(cmd, seq: seq, body)), "cmd \(cmd) acted on",
                      file: file, line: line)
    }

    func login(_ client: TestClient, uid: UInt32) { send(client, 10, PushCore.u32(uid)) }

    func push(_ control: TestClient, _ scope: LinkMessage.Scope, _ target: UInt32, _ payload: [UInt8]) {
        send(control, 20, PushCore.scoped(scope, target, payload))
    }
}

extension TestClient {
    /// The next frame, which must be a push (cmd 99): its body, or nil.
    func nextPush() -> [UInt8]? {
        guard let f = receiveFrame() else { return nil }
        let h = f.withUnsafeBytes { FrameHeader(decoding: $0.baseAddress!) }
        return h.cmd == PushCore.pushedCmd ? Array(f[FrameHeader.size...]) : nil
    }

    /// True when no push is waiting: a heartbeat's echo is the next frame.
    func hasNoPush() -> Bool {
        echoes(TestClient.frame(seq: 0, cmd: ReservedCommand.heartbeat, bodySize: 0))
    }
}
