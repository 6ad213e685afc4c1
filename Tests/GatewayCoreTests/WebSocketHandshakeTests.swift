import XCTest
@testable import GatewayCore

/// The opening handshake parser and its answers (RFC 6455 4.2), fed whole and byte by byte.
final class WebSocketHandshakeTests: XCTestCase {
    private let rules = WebSocketHandshakeRules(path: "/chat", origins: ["https://Example.com", "null"], anyOrigin: false)

    private func request(target: String = "/chat", version: String = "HTTP/1.1", headers: [String]? = nil,
                         extra: [String] = []) -> [UInt8] {
        let standard = ["Host: gw.test", "Upgrade: websocket", "Connection: Upgrade",
                        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"]
        let lines = ["GET \(target) \(version)"] + (headers ?? standard) + extra
        return Array((lines.joined(separator: "\r\n") + "\r\n\r\n").utf8)
    }

    private func parse(_ bytes: [UInt8], _ rules: WebSocketHandshakeRules? = nil) -> WebSocketHandshake.Verdict {
        bytes.withUnsafeBytes { WebSocketHandshake.parse($0.baseAddress!, count: $0.count, rules: rules ?? self.rules) }
    }

    private func text(_ write: (UnsafeMutableRawPointer) -> Int) -> String {
        var out = [UInt8](repeating: 0, count: WebSocketHandshake.maxResponse)
        let n = out.withUnsafeMutableBytes { write($0.baseAddress!) }
        XCTAssertLessThanOrEqual(n, WebSocketHandshake.maxResponse)
        return String(decoding: out[0..<n], as: UTF8.self)
    }

    func testSHA1MatchesKnownDigests() {
        func hex(_ bytes: [UInt8]) -> String {
            var d = [UInt8](repeating: 0, count: 20)
            bytes.withUnsafeBytes { b in d.withUnsafeMutableBytes { SHA1.digest(b.baseAddress!, count: b.count, into: $0.baseAddress!) } }
            return d.map { String(format: "%02x", $0) }.joined()
        }
        XCTAssertEqual(hex([]), "da39a3ee5e6b4b0d3255bfef95601890afd80709")
        XCTAssertEqual(hex(Array("abc".utf8)), "a9993e364706816aba3e25717850c26c9cd0d89d")
        XCTAssertEqual(hex(Array("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq".utf8)),
                       "84983e441c3bd26ebaae4aa1f95129e5e54670f1")
        XCTAssertEqual(hex([UInt8](repeating: 0x61, count: 1_000_000)), "34aa973cd4c4daa4f61eeb2bdbad27316534016f")
        // Lengths around the padding's one-or-two-block boundary (digests from Python's hashlib).
        let expected = [55: "ddf57317ef34bfee3b6df83d359098930eb278bc", 56: "a0d492bb0fc889d0eca3bc137066ab6f4f74f369",
                        57: "11a02dcf95859677a62e75024067c22b165d890f", 63: "c55856749bef509bdfe6bfebfc7bf4e793e82132",
                        64: "bede92be29c3874e1b54ddc77988d606fc857a8e", 65: "b05a80522b053d6dc7e0a517d0e70212c7dad11f",
                        119: "504e27376a6e0f0dba8295b85cb25dc4dfa17d23", 120: "82134b02fb3f702491be9bed581eeab59334acb2",
                        128: "a09133e6730ffe899efb70204cb5646cd5dc24ee"]
        for (n, digest) in expected {
            XCTAssertEqual(hex((0..<n).map { UInt8(truncatingIfNeeded: $0 * 7 + 3) }), digest, "length \(n)")
        }
    }

    func testRFCExampleIsAcceptedWithItsAcceptValue() {
        let bytes = request()
        guard case .upgrade(let length, let keyOffset) = parse(bytes) else { return XCTFail("\(parse(bytes))") }
        XCTAssertEqual(length, bytes.count)
        XCTAssertEqual(String(decoding: bytes[keyOffset..<keyOffset + 24], as: UTF8.self), "dGhlIHNhbXBsZSBub25jZQ==")
        let answer = bytes.withUnsafeBytes { b in text { WebSocketHandshake.writeAccept(key: b.baseAddress! + keyOffset, into: $0) } }
        XCTAssertEqual(answer, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       + "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n")
    }

    func testEveryPrefixIsIncompleteAndBytesAfterTheHeadAreNotTaken() {
        let bytes = request()
        for n in 1..<bytes.count {
            XCTAssertEqual(parse(Array(bytes[0..<n])), .incomplete, "prefix of \(n)")
        }
        let followed = bytes + [0x82, 0x80, 1, 2, 3, 4]
        guard case .upgrade(let length, _) = parse(followed) else { return XCTFail() }
        XCTAssertEqual(length, bytes.count, "a frame sent right after the request is left for the frame reader")
    }

    func testHeaderVariantsBrowsersAndLibrariesSendAreAccepted() {
        let lenient = ["host:gw.test", "UPGRADE:  WebSocket ", "connection: keep-alive, Upgrade",
                       "sec-websocket-key:\tdGhlIHNhbXBsZSBub25jZQ==", "SEC-WEBSOCKET-VERSION: 13",
                       "Sec-WebSocket-Extensions: permessage-deflate", "User-Agent: x"]
        if case .upgrade = parse(request(headers: lenient)) {} else { XCTFail("\(parse(request(headers: lenient)))") }
        if case .upgrade = parse(request(target: "/chat?token=1&x")) {} else { XCTFail("a query is ignored") }
        if case .upgrade = parse(request(extra: ["Origin: https://EXAMPLE.com"])) {} else { XCTFail("origin case") }
        if case .upgrade = parse(request(extra: ["Origin: null"])) {} else { XCTFail("listed null origin") }
        let any = WebSocketHandshakeRules(path: "/chat", origins: [], anyOrigin: true)
        if case .upgrade = parse(request(extra: ["Origin: http://evil.test"]), any) {} else { XCTFail("any origin") }
    }

    func testRefusalsCarryTheirStatus() {
        let key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="
        let cases: [([UInt8], WebSocketRefusal, String)] = [
            (Array("POST /chat HTTP/1.1\r\n\r\n".utf8), .methodNotAllowed, "method"),
            (Array("PO".utf8), .methodNotAllowed, "another method, refused at its first byte"),
            (Array("GE".utf8) + [0x00], .badRequest, "a control byte in the method"),
            ([0, 0, 0, 26, 0, 0, 0, 1], .badRequest, "a plain gateway frame is refused at once"),
            (Array("GETX".utf8), .methodNotAllowed, "another method"),
            (request(target: "/other"), .notFound, "path"),
            (request(target: "/chatroom"), .notFound, "path prefix"),
            (request(target: "chat"), .badRequest, "target without slash"),
            (request(version: "HTTP/1.0"), .badRequest, "HTTP/1.0"),
            (request(headers: ["Upgrade: websocket", "Connection: Upgrade", key, "Sec-WebSocket-Version: 13"]),
             .badRequest, "no Host"),
            (request(headers: ["Host: a", "Upgrade: h2c", "Connection: Upgrade", key, "Sec-WebSocket-Version: 13"]),
             .badRequest, "Upgrade not websocket"),
            (request(headers: ["Host: a", "Upgrade: websocket", "Connection: close", key, "Sec-WebSocket-Version: 13"]),
             .badRequest, "Connection without upgrade"),
            (request(headers: ["Host: a", "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13"]),
             .badRequest, "no key"),
            (request(headers: ["Host: a", "Upgrade: websocket", "Connection: Upgrade", key]), .badRequest, "no version"),
            (request(headers: ["Host: a", "Upgrade: websocket", "Connection: Upgrade", key, "Sec-WebSocket-Version: 8"]),
             .upgradeRequired, "version 8"),
            (request(extra: [key]), .badRequest, "two keys"),
            (request(extra: ["Host: b"]), .badRequest, "two hosts"),
            (request(extra: ["Origin: https://evil.test"]), .forbiddenOrigin, "origin not listed"),
            (request(extra: ["Origin: https://example.com.evil.test"]), .forbiddenOrigin, "origin with a suffix"),
            (request(extra: [" folded"]), .badRequest, "obsolete line folding"),
            (request(extra: ["No colon here"]), .badRequest, "header without a colon"),
            (Array("GET /chat HTTP/1.1\nHost: a\n\n".utf8), .badRequest, "bare LF"),
            (Array("GET /chat HTTP/1.1\r\nHost: a\rb\r\n\r\n".utf8), .badRequest, "bare CR"),
        ]
        for (bytes, refusal, why) in cases {
            XCTAssertEqual(parse(bytes), .refused(refusal), why)
        }
        for bad in ["dGhlIHNhbXBsZSBub25jZQ=", "dGhlIHNhbXBsZSBub25jZR==", "dGhlIHNhbXBsZSBub25j*Q==",
                    "dGhlIHNhbXBsZSBub25jZQ=A", "dGhlIHNhbXBsZSBub25jZQ==="] {
            let h = ["Host: a", "Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: \(bad)",
                     "Sec-WebSocket-Version: 13"]
            XCTAssertEqual(parse(request(headers: h)), .refused(.badRequest), "key \(bad)")
        }
    }

    func testAnOverlongHeadIsRefused431NotWaitedFor() {
        var bytes = Array("GET /chat HTTP/1.1\r\nHost: a\r\nX-Pad: ".utf8)
        bytes += [UInt8](repeating: 0x61, count: WebSocketHandshake.maxRequest - bytes.count - 1)
        XCTAssertEqual(parse(bytes), .incomplete)
        XCTAssertEqual(parse(bytes + [0x61]), .refused(.headersTooLarge))
        XCTAssertEqual(parse(Array("GE".utf8)), .incomplete)
    }

    func testRefusalAnswersAreHTTPWithTheirStatusLine() {
        for (refusal, line) in [(WebSocketRefusal.badRequest, "400 Bad Request"), (.forbiddenOrigin, "403 Forbidden"),
                                (.notFound, "404 Not Found"), (.methodNotAllowed, "405 Method Not Allowed"),
                                (.upgradeRequired, "426 Upgrade Required"),
                                (.headersTooLarge, "431 Request Header Fields Too Large")] {
            let answer = text { WebSocketHandshake.writeRefusal(refusal, into: $0) }
            XCTAssertTrue(answer.hasPrefix("HTTP/1.1 \(line)\r\n"), answer)
            XCTAssertTrue(answer.hasSuffix("Connection: close\r\nContent-Length: 0\r\n\r\n"), answer)
        }
        XCTAssertTrue(text { WebSocketHandshake.writeRefusal(.upgradeRequired, into: $0) }
            .contains("\r\nSec-WebSocket-Version: 13\r\n"))
    }
}
