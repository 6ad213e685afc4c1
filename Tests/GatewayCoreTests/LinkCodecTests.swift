import XCTest
@_spi(Benchmarks) @testable import GatewayCore

/// The link codec of docs/LINK.md: byte layout of every message, round trips,
/// every bad length, and link frames cut and coalesced like client frames.
final class LinkCodecTests: XCTestCase {
    private let maxFrame = 1 << 20
    private let session = SessionID(node: 0x0A0B_0C0D, connection: ConnectionID(index: 0x0102_0304, generation: 0x0506_0708))

    private func encode(_ m: LinkMessage, inner: [UInt8] = []) -> [UInt8] {
        var bytes = [UInt8](repeating: 0xEE, count: m.encodedLength)
        bytes.withUnsafeMutableBytes { m.encode(into: $0.baseAddress!) }
        return bytes + inner
    }

    private func decode(_ bytes: [UInt8]) -> Result<LinkMessage, LinkMessage.Malformed> {
        bytes.withUnsafeBytes { LinkMessage.decode($0.baseAddress!, maxFrame: maxFrame) }
    }

    func testHelloLayoutMatchesTheDocument() {
        let hello = LinkMessage.Hello(status: 3, role: .aggregation, node: 0x1122_3344, link: 0x0506,
                                      heartbeatMilliseconds: 0x0000_03E8, maxFrame: 0x0010_0000,
                                      maxQueuedBytes: 0x0040_0000)
        let bytes = encode(.hello(hello))
        XCTAssertEqual(bytes.count, 40)
        XCTAssertEqual(Array(bytes[0..<4]), [0, 0, 0, 40], "length")
        XCTAssertEqual(Array(bytes[4..<8]), [0, 0, 0, 0], "seq is 0 on links")
        XCTAssertEqual(Array(bytes[8..<10]), [0xFF, 0x10], "cmd")
        XCTAssertEqual(Array(bytes[10..<14]), [0, 0, 0, 3], "status")
        XCTAssertEqual(Array(bytes[14..<18]), [0, 0, 0, 0], "uid is 0 on links")
        XCTAssertEqual(Array(bytes[18..<20]), [0, 2], "version")
        XCTAssertEqual(bytes[20], 2, "role")
        XCTAssertEqual(bytes[21], 0, "features: none")
        XCTAssertEqual(Array(bytes[22..<26]), [0x11, 0x22, 0x33, 0x44], "node")
        XCTAssertEqual(Array(bytes[26..<28]), [0x05, 0x06], "link")
        XCTAssertEqual(Array(bytes[28..<32]), [0, 0, 0x03, 0xE8], "heartbeat_ms")
        XCTAssertEqual(Array(bytes[32..<36]), [0, 0x10, 0, 0], "max_frame")
        XCTAssertEqual(Array(bytes[36..<40]), [0, 0x40, 0, 0], "max_queued_bytes")
        XCTAssertEqual(try decode(bytes).get(), .hello(hello))
    }

    func testHelloFeaturesAreByte21() throws {
        var hello = LinkMessage.Hello(role: .core, node: 1, link: 0, heartbeatMilliseconds: 1000)
        hello.features = LinkMessage.Feature.moves
        let bytes = encode(.hello(hello))
        XCTAssertEqual(bytes[21], 1, "features: moves")
        XCTAssertEqual(try decode(bytes).get(), .hello(hello))
    }

    func testMoveLayoutMatchesTheDocument() throws {
        let peer = PeerAddress(ipv4: UInt32(0x7F00_0001).bigEndian, port: 40_001)
        let moved = encode(.move(session, .moved, link: 0x0102, peer: peer, transport: OpenedTransport.tcp))
        XCTAssertEqual(moved.count, 54)
        XCTAssertEqual(Array(moved[0..<4]), [0, 0, 0, 54], "length")
        XCTAssertEqual(Array(moved[8..<10]), [0xFF, 0x1F], "cmd")
        XCTAssertEqual(Array(moved[18..<30]), [0x0A, 0x0B, 0x0C, 0x0D, 1, 2, 3, 4, 5, 6, 7, 8], "session id")
        XCTAssertEqual(moved[30], 3, "kind: moved")
        XCTAssertEqual(moved[31], 0, "transport")
        XCTAssertEqual(Array(moved[32..<34]), [1, 2], "link")
        XCTAssertEqual(moved[34], 4, "family")
        XCTAssertEqual(moved[35], 0, "reserved")
        XCTAssertEqual(Array(moved[36..<38]), [0x9C, 0x41], "port")
        XCTAssertEqual(Array(moved[38..<42]), [127, 0, 0, 1], "address")
        XCTAssertEqual(Array(moved[42..<54]), [UInt8](repeating: 0, count: 12))
        XCTAssertEqual(try decode(moved).get(), .move(session, .moved, link: 0x0102, peer: peer, transport: 0))
        for kind in [LinkMessage.MoveKind.moving, .ready] {
            let bytes = encode(.move(session, kind, link: 0, peer: PeerAddress(ipv4: 0, port: 0), transport: 0))
            XCTAssertEqual(bytes[30], kind.rawValue)
            XCTAssertEqual(try decode(bytes).get(), .move(session, kind, link: 0, peer: PeerAddress(ipv4: 0, port: 0),
                                                         transport: 0))
        }
        for bad: UInt8 in [0, 4, 255] {
            var bytes = moved
            bytes[30] = bad
            XCTAssertEqual(decode(bytes), .failure(.badMoveKind(bad)), "kind \(bad)")
        }
    }

    func testPushDroppedLayoutMatchesTheDocument() throws {
        let session = SessionID(node: 0x0A0B_0C0D, connection: ConnectionID(index: 0x0102_0304, generation: 0x0506_0708))
        let bytes = encode(.pushDropped(session, count: 0x0000_0102))
        XCTAssertEqual(Array(bytes[0..<4]), [0, 0, 0, 34], "length")
        XCTAssertEqual(Array(bytes[8..<10]), [0xFF, 0x1E], "cmd")
        XCTAssertEqual(Array(bytes[18..<30]), [0x0A, 0x0B, 0x0C, 0x0D, 1, 2, 3, 4, 5, 6, 7, 8], "session id")
        XCTAssertEqual(Array(bytes[30..<34]), [0, 0, 1, 2], "count")
        XCTAssertEqual(try decode(bytes).get(), .pushDropped(session, count: 0x102))
    }

    func testOpenedDataClosedAndLinkDownLayouts() throws {
        let sessionBytes: [UInt8] = [0x0A, 0x0B, 0x0C, 0x0D, 1, 2, 3, 4, 5, 6, 7, 8]
        let peer = PeerAddress(ipv4: UInt32(0x7F00_0001).bigEndian, port: 40_001)
        let opened = encode(.opened(session, link: 7, peer: peer))
        XCTAssertEqual(opened.count, 52)
        XCTAssertEqual(Array(opened[8..<10]), [0xFF, 0x12])
        XCTAssertEqual(Array(opened[18..<30]), sessionBytes, "session id: node, slot, generation")
        XCTAssertEqual(Array(opened[30..<32]), [0, 7], "link number")
        XCTAssertEqual(opened[32], 4, "family")
        XCTAssertEqual(Array(opened[34..<36]), [0x9C, 0x41], "port 40001")
        XCTAssertEqual(Array(opened[36..<40]), [127, 0, 0, 1], "IPv4 address")
        XCTAssertEqual(Array(opened[40..<52]), [UInt8](repeating: 0, count: 12), "rest of the address is zero")
        XCTAssertEqual(try decode(opened).get(), .opened(session, link: 7, peer: peer))

        let client = TestClient.frame(seq: 9, bodySize: 5)
        let data = encode(.data(session, clientFrameLength: UInt32(client.count)), inner: client)
        XCTAssertEqual(data.count, 30 + client.count)
        XCTAssertEqual(Array(data[0..<4]), [0, 0, 0, UInt8(30 + client.count)])
        XCTAssertEqual(Array(data[8..<10]), [0xFF, 0x13])
        XCTAssertEqual(Array(data[18..<30]), sessionBytes)
        XCTAssertEqual(Array(data[30...]), client, "the client frame unchanged")
        XCTAssertEqual(try decode(data).get(), .data(session, clientFrameLength: UInt32(client.count)))

        let closed = encode(.closed(session, cause: 4))
        XCTAssertEqual(closed.count, 34)
        XCTAssertEqual(Array(closed[8..<10]), [0xFF, 0x14])
        XCTAssertEqual(Array(closed[18..<30]), sessionBytes)
        XCTAssertEqual(Array(closed[30..<34]), [4, 0, 0, 0])
        XCTAssertEqual(try decode(closed).get(), .closed(session, cause: 4))

        let down = encode(.linkDown(node: 0x0A0B_0C0D, link: 3))
        XCTAssertEqual(down.count, 24)
        XCTAssertEqual(Array(down[8..<10]), [0xFF, 0x15])
        XCTAssertEqual(Array(down[18..<24]), [0x0A, 0x0B, 0x0C, 0x0D, 0, 3])
        XCTAssertEqual(try decode(down).get(), .linkDown(node: 0x0A0B_0C0D, link: 3))

        let beat = encode(.heartbeat)
        XCTAssertEqual(beat, [0, 0, 0, 18, 0, 0, 0, 0, 0xFF, 0x11] + [UInt8](repeating: 0, count: 8))
        XCTAssertEqual(try decode(beat).get(), .heartbeat)
    }

    private let tree = LinkMessage.TreeWide(scope: .room, target: 0x1122_3344, origin: 0x5566_7788,
                                            seq: 0x0102_0304_0506_0708)

    func testUserRoomAndPushLayouts() throws {
        let sessionBytes: [UInt8] = [0x0A, 0x0B, 0x0C, 0x0D, 1, 2, 3, 4, 5, 6, 7, 8]
        for (m, cmd, value) in [(LinkMessage.bind(session, uid: 0x0102_0304), UInt8(0x16), [UInt8]([1, 2, 3, 4])),
                                (.join(session, room: 9), 0x18, [0, 0, 0, 9]), (.leave(session, room: 9), 0x19, [0, 0, 0, 9])] {
            let bytes = encode(m)
            XCTAssertEqual(bytes.count, 34, "\(m)")
            XCTAssertEqual(Array(bytes[8..<10]), [0xFF, cmd])
            XCTAssertEqual(Array(bytes[18..<30]), sessionBytes)
            XCTAssertEqual(Array(bytes[30..<34]), value)
            XCTAssertEqual(try decode(bytes).get(), m)
        }
        let unbind = encode(.unbind(session))
        XCTAssertEqual(unbind.count, 30)
        XCTAssertEqual(try decode(unbind).get(), .unbind(session))

        let treeBytes: [UInt8] = [2, 0, 0, 0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 1, 2, 3, 4, 5, 6, 7, 8]
        let client = TestClient.frame(seq: 4, cmd: 99, bodySize: 7)
        let push = encode(.push(tree, clientFrameLength: UInt32(client.count)), inner: client)
        XCTAssertEqual(push.count, 38 + client.count)
        XCTAssertEqual(Array(push[8..<10]), [0xFF, 0x1A])
        XCTAssertEqual(Array(push[18..<38]), treeBytes, "scope, reserved, target, origin, seq")
        XCTAssertEqual(Array(push[38...]), client, "the client frame unchanged")
        XCTAssertEqual(try decode(push).get(), .push(tree, clientFrameLength: UInt32(client.count)))
        for (m, cmd) in [(LinkMessage.kick(tree), UInt8(0x1B)), (.presenceQuery(tree), 0x1C)] {
            let bytes = encode(m)
            XCTAssertEqual(bytes.count, 38)
            XCTAssertEqual(Array(bytes[8..<10]), [0xFF, cmd])
            XCTAssertEqual(Array(bytes[18..<38]), treeBytes)
            XCTAssertEqual(try decode(bytes).get(), m)
        }
        let presence = encode(.presence(tree, node: 0x0A0B_0C0D, count: 3))
        XCTAssertEqual(presence.count, 46)
        XCTAssertEqual(Array(presence[18..<38]), treeBytes)
        XCTAssertEqual(Array(presence[38..<46]), [0x0A, 0x0B, 0x0C, 0x0D, 0, 0, 0, 3])
        XCTAssertEqual(try decode(presence).get(), .presence(tree, node: 0x0A0B_0C0D, count: 3))

        // A scope outside 1...4, and a PUSH whose inner frame disagrees with its length.
        var badScope = encode(.kick(tree))
        badScope[18] = 5
        XCTAssertEqual(decode(badScope), .failure(.badScope(5)))
        var badPush = push
        badPush[41] &+= 1
        XCTAssertEqual(decode(badPush), .failure(.badInnerLength(outer: UInt32(push.count),
                                                                 inner: UInt32(client.count) + 1)))
        XCTAssertEqual(decode(Array(push[..<(38 + 17)]).withLength()), .failure(.badLength(cmd: 0xFF1A, length: 55)))
    }

    func testIPv6PeerRoundTrips() throws {
        let bytes: (UInt64, UInt64) = (0x0102_0304_0506_0708, 0x090A_0B0C_0D0E_0F10)
        let peer = PeerAddress(family: 6, port: 443, bytes: bytes)
        XCTAssertEqual(try decode(encode(.opened(session, link: 0, peer: peer))).get(), .opened(session, link: 0, peer: peer))
    }

    /// Every fixed-size message with any other length, and DATA with every
    /// inconsistent inner length, is malformed; so is an unknown command.
    func testEveryBadLengthIsMalformed() {
        let messages: [LinkMessage] = [
            .hello(.init(role: .access, node: 1, link: 0, heartbeatMilliseconds: 1000)), .heartbeat,
            .opened(session, link: 0, peer: PeerAddress(ipv4: 0, port: 0)), .closed(session, cause: 0),
            .linkDown(node: 1, link: 0), .bind(session, uid: 1), .unbind(session), .join(session, room: 1),
            .leave(session, room: 1), .kick(tree), .presenceQuery(tree), .presence(tree, node: 1, count: 2),
            .move(session, .moving, link: 0, peer: PeerAddress(ipv4: 0, port: 0), transport: 0),
        ]
        for m in messages {
            let good = encode(m)
            for length in [18, 19, 24, 30, 31, 32, 33, 34, 38, 46, 51, 52, 53, 54, 55, 200] where length != good.count {
                var bytes = good + [UInt8](repeating: 0, count: max(0, length - good.count))
                bytes.replaceSubrange(0..<4, with: [0, 0, UInt8(length >> 8), UInt8(length & 0xFF)])
                let cmd = UInt16(good[8]) << 8 | UInt16(good[9])
                XCTAssertEqual(decode(bytes), .failure(.badLength(cmd: cmd, length: UInt32(length))), "\(m) at \(length)")
            }
        }
        let client = TestClient.frame(seq: 1, bodySize: 10)
        for inner in [0, 17, 18, 27, 29, 0xFFFF_FFFF] as [UInt32] {
            var data = encode(.data(session, clientFrameLength: UInt32(client.count)), inner: client)
            withUnsafeBytes(of: inner.bigEndian) { data.replaceSubrange(30..<34, with: $0) }
            XCTAssertEqual(decode(data), .failure(.badInnerLength(outer: UInt32(data.count), inner: inner)))
        }
        // DATA too short to hold a session id and a client header.
        var short = encode(.heartbeat)
        short[9] = 0x13
        XCTAssertEqual(decode(short), .failure(.badLength(cmd: 0xFF13, length: 18)))
        // An inner frame over max_frame.
        let big = [UInt8](repeating: 0, count: 30)
        var oversized = big
        let outer = UInt32(maxFrame + 1 + 30)
        withUnsafeBytes(of: outer.bigEndian) { oversized.replaceSubrange(0..<4, with: $0) }
        oversized[8] = 0xFF
        oversized[9] = 0x13
        oversized += TestClient.rawHeader(length: UInt32(maxFrame + 1))
        XCTAssertEqual(decode(oversized), .failure(.badInnerLength(outer: outer, inner: UInt32(maxFrame + 1))))
        for cmd: UInt16 in [0xFF00, 0xFF01, 0xFF0F, 0x0001] {
            var bytes = encode(.heartbeat)
            bytes[8] = UInt8(cmd >> 8)
            bytes[9] = UInt8(cmd & 0xFF)
            XCTAssertEqual(decode(bytes), .failure(.unknownCommand(cmd)))
        }
    }

    /// A stream of link frames cut at every position and coalesced: the frame
    /// assembly (with the link limit, max_frame + 30) yields exactly the frames sent.
    func testLinkFramesSurviveEverySplit() throws {
        let client = TestClient.frame(seq: 3, bodySize: 40)
        let stream = encode(.hello(.init(role: .access, node: 5, link: 1, heartbeatMilliseconds: 500)))
            + encode(.opened(session, link: 1, peer: PeerAddress(ipv4: 0x0100_007F, port: 1)))
            + encode(.data(session, clientFrameLength: UInt32(client.count)), inner: client)
            + encode(.heartbeat) + encode(.closed(session, cause: 0))
        let expected: [UInt16] = [0xFF10, 0xFF12, 0xFF13, 0xFF11, 0xFF14]
        let pool = ChunkPool()
        for cut in 1..<stream.count {
            var assembly = FrameAssembly()
            var cmds: [UInt16] = []
            for piece in [Array(stream[..<cut]), Array(stream[cut...])] {
                let block = pool.allocate(capacity: ChunkPool.blockCapacity)
                piece.withUnsafeBytes { block.bytes.copyMemory(from: $0.baseAddress!, byteCount: piece.count) }
                let outcome = assembly.consume(block: block, start: 0, count: piece.count,
                                               maxFrame: maxFrame + LinkMessage.dataOverhead, pool: pool) { d in
                    var at = 0
                    while at < Int(d.length) {
                        let p = d.start + at
                        if case .failure(let e) = LinkMessage.decode(p, maxFrame: maxFrame) { XCTFail("\(e) at cut \(cut)") }
                        cmds.append(FrameHeader(decoding: p).cmd)
                        at += Int(FrameHeader.length(at: p))
                    }
                    pool.release(d.chunk)
                }
                guard case .ok = outcome else { return XCTFail("cut \(cut): \(outcome)") }
                pool.release(block)
            }
            XCTAssertEqual(cmds, expected, "cut at \(cut)")
        }
    }
}

private extension Array where Element == UInt8 {
    /// The frame with its length field set to its size.
    func withLength() -> [UInt8] {
        var copy = self
        Swift.withUnsafeBytes(of: UInt32(count).bigEndian) { copy.replaceSubrange(0..<4, with: $0) }
        return copy
    }
}
