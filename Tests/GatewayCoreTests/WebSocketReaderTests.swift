import XCTest
@testable import GatewayCore

/// The frame codec: headers written and parsed, masking, and the streaming reader fed
/// client byte streams cut at every position.
final class WebSocketReaderTests: XCTestCase {
    /// A client frame: header, mask and masked payload.
    static func clientFrame(_ opcode: UInt8, _ payload: [UInt8], fin: Bool = true, mask: UInt32? = 0x1234_5678,
                            rsv: UInt8 = 0) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: WebSocketFrame.maxHeader + payload.count)
        let n = out.withUnsafeMutableBytes { o -> Int in
            let h = WebSocketFrame.writeHeader(WebSocketOpcode(rawValue: opcode) ?? .binary, length: payload.count,
                                               mask: mask, fin: fin, into: o.baseAddress!)
            o[0] = (fin ? 0x80 : 0) | rsv | opcode
            payload.withUnsafeBytes { p in
                if payload.isEmpty { return }
                WebSocketFrame.unmask(p.baseAddress!, to: o.baseAddress! + h, count: payload.count, mask: mask ?? 0,
                                      phase: 0)
            }
            return h + payload.count
        }
        return Array(out[0..<n])
    }

    struct Decoded: Equatable {
        var payload: [UInt8] = []
        var pings: [[UInt8]] = []
        var pongs = 0
        var end: String = "ok"
    }

    /// Feeds `stream` in reads ending at `cuts`, gathering what the reader yields.
    static func decode(_ stream: [UInt8], cuts: [Int], maxMessage: Int = 1 << 16, fromClient: Bool = true) -> Decoded {
        var reader = WebSocketReader(fromClient: fromClient)
        var d = Decoded()
        var from = 0
        for cut in cuts + [stream.count] where cut > from {
            var chunk = Array(stream[from..<cut])
            from = cut
            let outcome = chunk.withUnsafeMutableBytes { c in
                reader.decode(c.baseAddress!, count: c.count, maxMessage: maxMessage) { e in
                    switch e {
                    case .ping(let p): d.pings.append(Array(p))
                    case .pong: d.pongs += 1
                    }
                }
            }
            switch outcome {
            case .ok(let n): d.payload += chunk[0..<n]
            case .closed(let code, let n): d.payload += chunk[0..<n]; d.end = "closed \(code)"
            case .failed(let code, let n): d.payload += chunk[0..<n]; d.end = "failed \(code)"
            }
            if d.end != "ok" { break }
        }
        return d
    }

    /// The same stream whole, split at every single position, and byte by byte must decode alike.
    private func check(_ stream: [UInt8], maxMessage: Int = 1 << 16, _ expected: Decoded,
                       file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(Self.decode(stream, cuts: [], maxMessage: maxMessage), expected, "whole", file: file, line: line)
        for cut in 1..<max(1, stream.count) {
            XCTAssertEqual(Self.decode(stream, cuts: [cut], maxMessage: maxMessage), expected, "cut at \(cut)",
                           file: file, line: line)
        }
        XCTAssertEqual(Self.decode(stream, cuts: Array(0..<stream.count), maxMessage: maxMessage), expected,
                       "byte by byte", file: file, line: line)
    }

    private func gatewayFrame(_ seq: UInt32, body: Int) -> [UInt8] {
        TestClient.frame(seq: seq, cmd: 7, uid: 1, body: (0..<body).map { UInt8(truncatingIfNeeded: $0 &+ Int(seq)) })
    }

    func testHeaderLengthsRoundTripAndNonMinimalOnesAreRefused() {
        for length in [0, 1, 125, 126, 127, 65535, 65536, 1 << 20] {
            var buffer = [UInt8](repeating: 0, count: 14)
            buffer.withUnsafeMutableBytes { b in
                let n = WebSocketFrame.writeHeader(.binary, length: length, mask: 0xA1B2_C3D4, into: b.baseAddress!)
                XCTAssertEqual(n, WebSocketFrame.headerLength(payload: length) + 4)
                guard case .header(let h) = WebSocketFrame.parse(b.baseAddress!, count: n, fromClient: true) else {
                    return XCTFail("length \(length)")
                }
                XCTAssertEqual(h, WebSocketFrame.Header(fin: true, opcode: 2, masked: true, mask: 0xA1B2_C3D4,
                                                         payloadLength: UInt64(length), headerLength: n))
                XCTAssertEqual(WebSocketFrame.parse(b.baseAddress!, count: n - 1, fromClient: true), .incomplete)
                XCTAssertEqual(WebSocketFrame.parse(b.baseAddress!, count: n, fromClient: false), .invalid(1002),
                               "a client reading a masked frame")
            }
        }
        let e = WebSocketFrame.Parse.invalid(WebSocketCloseCode.protocolError)
        XCTAssertEqual(WebSocketFrame.parse([0x82, 0xFE, 0, 125, 0, 0, 0, 0], count: 8, fromClient: true), e, "16-bit 125")
        XCTAssertEqual(WebSocketFrame.parse([0x82, 0xFF, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF, 0, 0, 0, 0], count: 14,
                                            fromClient: true), e, "64-bit 65535")
        XCTAssertEqual(WebSocketFrame.parse([0x82, 0xFF, 0x80, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0], count: 14,
                                            fromClient: true), e, "64-bit with the top bit set")
    }

    func testUnmaskMatchesBytewiseXorAtEveryPhaseAndInPlace() {
        var random = TestRandom(seed: 7)
        for _ in 0..<300 {
            let count = random.below(70)
            let phase = random.below(4)
            let shift = random.below(12)
            let mask = UInt32(truncatingIfNeeded: random.next())
            let source = (0..<count).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            let maskBytes = withUnsafeBytes(of: mask) { Array($0) }
            let expected = source.enumerated().map { $0.element ^ maskBytes[($0.offset + phase) & 3] }
            var buffer = [UInt8](repeating: 0, count: shift) + source
            let next = buffer.withUnsafeMutableBytes { b in
                WebSocketFrame.unmask(b.baseAddress! + shift, to: b.baseAddress!, count: count, mask: mask, phase: phase)
            }
            XCTAssertEqual(Array(buffer[0..<count]), expected, "moved down by \(shift) at phase \(phase)")
            XCTAssertEqual(next, (phase + count) & 3)
        }
    }

    func testBinaryMessagesYieldTheirFramesWhateverTheReadBoundaries() {
        let frames = [gatewayFrame(1, body: 0), gatewayFrame(2, body: 100), gatewayFrame(3, body: 300)]
        // One message holding two frames, one holding one, one empty message.
        var stream = Self.clientFrame(2, frames[0] + frames[1])
        stream += Self.clientFrame(2, frames[2], mask: 0x0BAD_F00D)
        stream += Self.clientFrame(2, [])
        check(stream, Decoded(payload: frames.flatMap { $0 }))
    }

    func testFragmentsReassembleWithControlFramesBetweenThem() {
        let frame = gatewayFrame(9, body: 200)
        var stream = Self.clientFrame(2, Array(frame[0..<3]), fin: false)
        stream += Self.clientFrame(9, Array("are you there".utf8))
        stream += Self.clientFrame(0, Array(frame[3..<150]), fin: false, mask: 0xFFFF_FFFF)
        stream += Self.clientFrame(10, [1, 2])
        stream += Self.clientFrame(0, [], fin: false)
        stream += Self.clientFrame(0, Array(frame[150...]), mask: 0x0102_0304)
        check(stream, Decoded(payload: frame, pings: [Array("are you there".utf8)], pongs: 1))
    }

    func testProtocolFaultsCloseWithTheirCodes() {
        let frame = gatewayFrame(1, body: 10)
        let ok = Self.clientFrame(2, frame)
        let cases: [([UInt8], String, String)] = [
            (Self.clientFrame(1, Array("hi".utf8)), "failed 1003", "a text message"),
            (Self.clientFrame(2, frame, mask: nil), "failed 1002", "an unmasked client frame"),
            (Self.clientFrame(0, frame), "failed 1002", "a continuation with no message"),
            (Self.clientFrame(2, [], fin: false) + Self.clientFrame(2, [0, 18]), "failed 1002",
             "a new message inside a fragmented one"),
            (Self.clientFrame(2, frame, rsv: 0x40), "failed 1002", "a reserved bit"),
            (Self.clientFrame(3, []), "failed 1002", "a reserved opcode"),
            (Self.clientFrame(9, [], fin: false), "failed 1002", "a fragmented ping"),
            (Self.clientFrame(9, [UInt8](repeating: 1, count: 126)), "failed 1002", "a ping over 125 bytes"),
            (Self.clientFrame(2, Array(frame[0..<20])) + Self.clientFrame(2, Array(frame[20...])), "failed 1007",
             "a gateway frame split across two messages"),
            (Self.clientFrame(8, [3]), "failed 1002", "a close with a one-byte body"),
            (Self.clientFrame(8, [0x03, 0xED]), "failed 1002", "close code 1005 on the wire"),
            (Self.clientFrame(8, [0x03, 0xE7]), "failed 1002", "close code 999"),
            (Self.clientFrame(8, [0x03, 0xE8, 0xC0, 0xAF]), "failed 1007", "a close reason that is not UTF-8"),
        ]
        for (stream, end, why) in cases {
            let d = Self.decode(ok + stream + ok, cuts: [])
            XCTAssertEqual(d.end, end, why)
            XCTAssertEqual(Array(d.payload.prefix(frame.count)), frame, "\(why): the message before it is delivered")
            XCTAssertLessThan(d.payload.count, 2 * frame.count, "\(why): nothing after the fault")
        }
    }

    func testCloseFramesEndTheStreamWithTheirCode() {
        let frame = gatewayFrame(4, body: 5)
        let reason = Array("bye \u{1F44B}".utf8)
        check(Self.clientFrame(2, frame) + Self.clientFrame(8, [0x03, 0xE8] + reason) + Self.clientFrame(2, frame),
              Decoded(payload: frame, end: "closed 1000"))
        check(Self.clientFrame(8, []) + [0xFF, 0xFF], Decoded(end: "closed 1005"))
        check(Self.clientFrame(8, [0x0F, 0xA0]), Decoded(end: "closed 4000"))
    }

    func testMessagesOverTheLimitAre1009EvenWhenFragmented() {
        let frame = gatewayFrame(1, body: 82)  // 100 bytes
        XCTAssertEqual(Self.decode(Self.clientFrame(2, frame), cuts: [], maxMessage: 100).end, "ok")
        XCTAssertEqual(Self.decode(Self.clientFrame(2, frame), cuts: [], maxMessage: 99).end, "failed 1009")
        let fragmented = Self.clientFrame(2, Array(frame[0..<60]), fin: false) + Self.clientFrame(0, Array(frame[60...]))
        XCTAssertEqual(Self.decode(fragmented, cuts: [], maxMessage: 99).end, "failed 1009")
        XCTAssertEqual(Self.decode(fragmented + fragmented, cuts: [], maxMessage: 100).payload, frame + frame,
                       "the limit is per message")
        // A header claiming a huge payload is refused before any of it arrives.
        var huge = [UInt8](repeating: 0, count: 14)
        huge.withUnsafeMutableBytes { _ = WebSocketFrame.writeHeader(.binary, length: 1 << 40, mask: 1, into: $0.baseAddress!) }
        XCTAssertEqual(Self.decode(huge, cuts: [3]).end, "failed 1009")
    }

    func testAClientReadsUnmaskedServerFrames() {
        let frame = gatewayFrame(5, body: 40)
        var stream = [UInt8](repeating: 0, count: 2)
        stream.withUnsafeMutableBytes { _ = WebSocketFrame.writeHeader(.binary, length: frame.count, into: $0.baseAddress!) }
        stream += frame
        XCTAssertEqual(Self.decode(stream, cuts: [1, 5], fromClient: false), Decoded(payload: frame))
        XCTAssertEqual(Self.decode(Self.clientFrame(2, frame), cuts: [], fromClient: false).end, "failed 1002")
    }

    func testUTF8Check() {
        for good in ["", "plain", "é", "€", "\u{10FFFF}", "𝄞"] {
            XCTAssertTrue(Array(good.utf8).withUnsafeBytes { WebSocketReader.isUTF8($0) }, good)
        }
        for bad: [UInt8] in [[0xC0, 0x80], [0xE0, 0x80, 0x80], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80],
                             [0xE2, 0x82], [0x80], [0xFF], [0xF0, 0x9F, 0x98]] {
            XCTAssertFalse(bad.withUnsafeBytes { WebSocketReader.isUTF8($0) }, "\(bad)")
        }
    }

    func testIdleReaderStateIsSmall() {
        // Held per WebSocket connection: it must stay well within the 256 B budget over a TCP connection.
        XCTAssertLessThanOrEqual(MemoryLayout<WebSocketReader>.stride, 200)
    }
}
