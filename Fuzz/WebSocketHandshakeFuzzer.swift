// libFuzzer target for the WebSocket opening handshake (Sources/GatewayCore/WebSocket/WebSocketHandshake.swift,
// SHA1.swift, Base64.swift). Built with swiftc by Tools/fuzz.sh, never by SwiftPM.
//
// Byte 0 picks the rules (origins listed or any); the rest is the request. Invariants (precondition):
// the verdict on the whole input is settled: no longer prefix changes a refusal or an upgrade, and
// every prefix shorter than an accepted head is incomplete or the same; an upgrade's length ends in
// CRLF CRLF within the input and maxRequest, its key is 24 base64 bytes; the 101 answer is well
// formed and its accept value is base64 of 20 bytes; every answer fits maxResponse.

import Glibc

private let ruleSets = [
    WebSocketHandshakeRules(path: "/ws", origins: ["https://example.com", "null"], anyOrigin: false),
    WebSocketHandshakeRules(path: "/", origins: [], anyOrigin: true),
]

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    if size == 0 || size > 8192 { return 0 }
    let rules = ruleSets[Int(data[0]) & 1]
    let p = UnsafeRawPointer(data + 1)
    let n = size - 1
    let verdict = WebSocketHandshake.parse(p, count: n, rules: rules)
    var out = [UInt8](repeating: 0, count: WebSocketHandshake.maxResponse)
    switch verdict {
    case .incomplete:
        precondition(n < WebSocketHandshake.maxRequest, "incomplete at \(n) bytes")
    case .refused(let refusal):
        let written = out.withUnsafeMutableBytes { WebSocketHandshake.writeRefusal(refusal, into: $0.baseAddress!) }
        precondition(written <= WebSocketHandshake.maxResponse)
        precondition(out.starts(with: Array("HTTP/1.1 \(refusal.rawValue) ".utf8)))
    case .upgrade(let length, let keyOffset):
        precondition(length >= 4 && length <= n && length <= WebSocketHandshake.maxRequest)
        precondition(data[length - 2] == 0x0A && data[length] == 0x0A && data[length - 1] == 0x0D)
        precondition(keyOffset > 0 && keyOffset + WebSocketHandshake.keyLength <= length)
        for i in 0..<22 { precondition(Base64.value(of: data[1 + keyOffset + i]) != nil) }
        let written = out.withUnsafeMutableBytes { WebSocketHandshake.writeAccept(key: p + keyOffset, into: $0.baseAddress!) }
        precondition(written <= WebSocketHandshake.maxResponse)
        let text = String(decoding: out[0..<written], as: UTF8.self)
        precondition(text.hasPrefix("HTTP/1.1 101 Switching Protocols\r\n") && text.hasSuffix("=\r\n\r\n"))
        let accept = out[(written - 32)..<(written - 5)]
        precondition(accept.allSatisfy { Base64.value(of: $0) != nil }, "accept value \(accept)")
        // Bytes after the head do not change the verdict, nor does cutting them off.
        let head = WebSocketHandshake.parse(p, count: length, rules: rules)
        precondition(head == verdict, "the head alone gives \(head)")
    }
    // Settled verdicts do not change with a shorter input that still holds what decided them:
    // every prefix is incomplete or the same verdict (or a refusal reached sooner is the same one).
    var k = 1
    while k < n {
        let v = WebSocketHandshake.parse(p, count: k, rules: rules)
        switch (v, verdict) {
        case (.incomplete, _): break
        case let (a, b) where a == b: break
        case (.refused(let a), .refused(let b)): precondition(a == b, "prefix \(k) refused \(a), whole \(b)")
        default: preconditionFailure("prefix \(k) gives \(v), whole gives \(verdict)")
        }
        k += k < 64 ? 1 : 37
    }
    return 0
}
