import Glibc

/// What a WebSocket listener accepts in the opening handshake: its path and the
/// `Origin` values browsers may come from (docs/WEBSOCKET.md). Built once at start-up.
public struct WebSocketHandshakeRules: Sendable {
    /// The request target's path, compared exactly (a query after `?` is ignored).
    public let path: [UInt8]
    /// Allowed `Origin` values, lowercased; compared without regard to ASCII case.
    public let origins: [[UInt8]]
    /// Any `Origin` is allowed (`--ws-any-origin`).
    public let anyOrigin: Bool

    public init(path: String, origins: [String], anyOrigin: Bool) {
        self.path = Array(path.utf8)
        self.origins = origins.map { Array($0.lowercased().utf8) }
        self.anyOrigin = anyOrigin
    }
}

/// Why a handshake was refused: the HTTP status the refusal is answered with before the close.
public enum WebSocketRefusal: UInt16, Sendable {
    case badRequest = 400
    case forbiddenOrigin = 403
    case notFound = 404
    case methodNotAllowed = 405
    case upgradeRequired = 426
    case headersTooLarge = 431
}

/// The server's half of the RFC 6455 opening handshake: parses the client's HTTP/1.1
/// upgrade request in place (no allocation) and writes the answer.
public enum WebSocketHandshake {
    /// The longest request taken; a longer one is answered 431.
    public static let maxRequest = 4096
    /// `Sec-WebSocket-Key`: base64 of 16 bytes.
    public static let keyLength = 24
    /// The longest answer `writeAccept` or `writeRefusal` writes.
    public static let maxResponse = 160

    public enum Verdict: Equatable, Sendable {
        /// More bytes are needed (the request is shorter than `maxRequest` and not yet ended).
        case incomplete
        /// A valid request of `length` bytes (up to its blank line); its key is at `keyOffset`.
        case upgrade(length: Int, keyOffset: Int)
        case refused(WebSocketRefusal)
    }

    /// Checks the request that begins at `p`. Judges a request as soon as its bytes allow:
    /// a first line that cannot begin a GET is refused without waiting for more.
    public static func parse(_ p: UnsafeRawPointer, count: Int, rules: WebSocketHandshakeRules) -> Verdict {
        let b = UnsafeRawBufferPointer(start: p, count: min(count, maxRequest))
        // The method, judged at its first byte that differs from "GET ": another method (capital letters) or not HTTP.
        let get: StaticString = "GET "
        for i in 0..<min(b.count, 4) where b[i] != get.utf8Start[i] {
            return b[i] >= 0x41 && b[i] <= 0x5A ? .refused(.methodNotAllowed) : .refused(.badRequest)
        }
        if b.count < 4 { return .incomplete }
        // The whole head: lines end in CRLF (a bare LF or a control byte is refused), then a blank line.
        var end = -1
        var i = 0
        while i < b.count {
            let c = b[i]
            if c == 0x0A {
                guard i > 0, b[i - 1] == 0x0D else { return .refused(.badRequest) }
                if i >= 3, b[i - 2] == 0x0A { end = i + 1; break }
            } else if c == 0x0D {
                if i + 1 < b.count, b[i + 1] != 0x0A { return .refused(.badRequest) }
            } else if c < 0x20 && c != 0x09 || c == 0x7F {
                return .refused(.badRequest)
            }
            i += 1
        }
        guard end > 0 else { return count >= maxRequest ? .refused(.headersTooLarge) : .incomplete }
        return judge(UnsafeRawBufferPointer(rebasing: b[0..<end]), rules: rules)
    }

    /// A whole head (every line CRLF-terminated, the method GET): the request line and the headers.
    private static func judge(_ b: UnsafeRawBufferPointer, rules: WebSocketHandshakeRules) -> Verdict {
        // "GET " target " HTTP/1.1" CRLF
        var lineEnd = 4
        while b[lineEnd] != 0x0D { lineEnd += 1 }
        var targetEnd = 4
        while targetEnd < lineEnd && b[targetEnd] != 0x20 { targetEnd += 1 }
        guard targetEnd > 4, b[4] == 0x2F, equals(b, targetEnd + 1, lineEnd, "HTTP/1.1") else {
            return .refused(.badRequest)
        }
        var pathEnd = 4
        while pathEnd < targetEnd && b[pathEnd] != 0x3F { pathEnd += 1 }
        guard pathEnd - 4 == rules.path.count, rules.path.withUnsafeBytes({ path in
            memoryEquals(path, UnsafeRawBufferPointer(rebasing: b[4..<pathEnd]))
        }) else { return .refused(.notFound) }

        var host = false, upgrade = false, connection = false, version: Range<Int>? = nil
        var key = -1
        var origin: Range<Int>? = nil
        var at = lineEnd + 2
        while b[at] != 0x0D {
            var e = at
            while b[e] != 0x0D { e += 1 }
            // name ":" OWS value OWS; a line starting with white space (obsolete folding) is refused.
            var colon = at
            while colon < e && isTokenByte(b[colon]) { colon += 1 }
            guard colon > at, colon < e, b[colon] == 0x3A else { return .refused(.badRequest) }
            var vs = colon + 1
            var ve = e
            while vs < ve && (b[vs] == 0x20 || b[vs] == 0x09) { vs += 1 }
            while ve > vs && (b[ve - 1] == 0x20 || b[ve - 1] == 0x09) { ve -= 1 }
            let name = at..<colon
            if equalsIgnoringCase(b, name, "host") {
                guard !host else { return .refused(.badRequest) }
                host = true
            } else if equalsIgnoringCase(b, name, "upgrade") {
                upgrade = upgrade || hasToken(b, vs..<ve, "websocket")
            } else if equalsIgnoringCase(b, name, "connection") {
                connection = connection || hasToken(b, vs..<ve, "upgrade")
            } else if equalsIgnoringCase(b, name, "sec-websocket-version") {
                guard version == nil else { return .refused(.badRequest) }
                version = vs..<ve
            } else if equalsIgnoringCase(b, name, "sec-websocket-key") {
                guard key < 0, ve - vs == keyLength, isKey(b, vs) else { return .refused(.badRequest) }
                key = vs
            } else if equalsIgnoringCase(b, name, "origin") {
                guard origin == nil else { return .refused(.badRequest) }
                origin = vs..<ve
            }
            at = e + 2
        }
        guard host, upgrade, connection, key >= 0, let version else { return .refused(.badRequest) }
        guard equals(b, version.lowerBound, version.upperBound, "13") else { return .refused(.upgradeRequired) }
        if let origin, !rules.anyOrigin {
            let allowed = rules.origins.contains { o in
                o.count == origin.count && o.indices.allSatisfy { lower(b[origin.lowerBound + $0]) == o[$0] }
            }
            guard allowed else { return .refused(.forbiddenOrigin) }
        }
        return .upgrade(length: b.count, keyOffset: key)
    }

    // MARK: answers

    private static let guid = Array("258EAFA5-E914-47DA-95CA-C5AB0DC85B11".utf8)
    private static let acceptHead = Array(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ".utf8)

    /// The `Sec-WebSocket-Accept` value for a key: base64(SHA-1(key + GUID)), 28 bytes written to `out`.
    public static func accept(key: UnsafeRawPointer, into out: UnsafeMutableRawPointer) {
        withUnsafeTemporaryAllocation(byteCount: keyLength + 36 + SHA1.digestSize, alignment: 8) { scratch in
            let s = scratch.baseAddress!
            s.copyMemory(from: key, byteCount: keyLength)
            guid.withUnsafeBytes { (s + keyLength).copyMemory(from: $0.baseAddress!, byteCount: 36) }
            let digest = s + keyLength + 36
            SHA1.digest(s, count: keyLength + 36, into: digest)
            Base64.encode(digest, count: SHA1.digestSize, into: out)
        }
    }

    /// Writes the 101 answer for the key at `key`; returns its length.
    public static func writeAccept(key: UnsafeRawPointer, into out: UnsafeMutableRawPointer) -> Int {
        var n = acceptHead.count
        acceptHead.withUnsafeBytes { out.copyMemory(from: $0.baseAddress!, byteCount: n) }
        accept(key: key, into: out + n)
        n += 28
        out.storeBytes(of: 0x0A0D_0A0D as UInt32, toByteOffset: n, as: UInt32.self)  // CR LF CR LF
        return n + 4
    }

    private static let refusals: [[UInt8]] = [
        WebSocketRefusal.badRequest, .forbiddenOrigin, .notFound, .methodNotAllowed, .upgradeRequired, .headersTooLarge,
    ].map { r in
        let reason: String
        switch r {
        case .badRequest: reason = "400 Bad Request"
        case .forbiddenOrigin: reason = "403 Forbidden"
        case .notFound: reason = "404 Not Found"
        case .methodNotAllowed: reason = "405 Method Not Allowed\r\nAllow: GET"
        case .upgradeRequired: reason = "426 Upgrade Required\r\nSec-WebSocket-Version: 13"
        case .headersTooLarge: reason = "431 Request Header Fields Too Large"
        }
        return Array("HTTP/1.1 \(reason)\r\nConnection: close\r\nContent-Length: 0\r\n\r\n".utf8)
    }

    /// Writes the HTTP answer to a refused handshake; returns its length. The connection closes after it.
    public static func writeRefusal(_ refusal: WebSocketRefusal, into out: UnsafeMutableRawPointer) -> Int {
        let index: Int
        switch refusal {
        case .badRequest: index = 0
        case .forbiddenOrigin: index = 1
        case .notFound: index = 2
        case .methodNotAllowed: index = 3
        case .upgradeRequired: index = 4
        case .headersTooLarge: index = 5
        }
        return refusals[index].withUnsafeBytes { r in
            out.copyMemory(from: r.baseAddress!, byteCount: r.count)
            return r.count
        }
    }

    // MARK: byte helpers

    @inline(__always) private static func lower(_ c: UInt8) -> UInt8 { c >= 0x41 && c <= 0x5A ? c | 0x20 : c }

    /// RFC 9110 tchar.
    private static func isTokenByte(_ c: UInt8) -> Bool {
        switch c {
        case 0x30...0x39, 0x41...0x5A, 0x61...0x7A: return true
        case 0x21, 0x23, 0x24, 0x25, 0x26, 0x27, 0x2A, 0x2B, 0x2D, 0x2E, 0x5E, 0x5F, 0x60, 0x7C, 0x7E: return true
        default: return false
        }
    }

    private static func memoryEquals(_ a: UnsafeRawBufferPointer, _ b: UnsafeRawBufferPointer) -> Bool {
        a.count == b.count && (a.count == 0 || memcmp(a.baseAddress!, b.baseAddress!, a.count) == 0)
    }

    private static func equals(_ b: UnsafeRawBufferPointer, _ from: Int, _ to: Int, _ text: StaticString) -> Bool {
        guard to - from == text.utf8CodeUnitCount else { return false }
        return memcmp(b.baseAddress! + from, text.utf8Start, to - from) == 0
    }

    private static func equalsIgnoringCase(_ b: UnsafeRawBufferPointer, _ r: Range<Int>, _ text: StaticString) -> Bool {
        guard r.count == text.utf8CodeUnitCount else { return false }
        for i in 0..<r.count where lower(b[r.lowerBound + i]) != text.utf8Start[i] { return false }
        return true
    }

    /// A comma-separated list holds `token` (ASCII case ignored).
    private static func hasToken(_ b: UnsafeRawBufferPointer, _ r: Range<Int>, _ token: StaticString) -> Bool {
        var s = r.lowerBound
        while s < r.upperBound {
            var e = s
            while e < r.upperBound && b[e] != 0x2C { e += 1 }
            var ts = s, te = e
            while ts < te && (b[ts] == 0x20 || b[ts] == 0x09) { ts += 1 }
            while te > ts && (b[te - 1] == 0x20 || b[te - 1] == 0x09) { te -= 1 }
            if equalsIgnoringCase(b, ts..<te, token) { return true }
            s = e + 1
        }
        return false
    }

    /// 22 base64 characters then "==", the last character carrying no stray bits: 16 bytes encoded.
    private static func isKey(_ b: UnsafeRawBufferPointer, _ at: Int) -> Bool {
        for i in 0..<22 where Base64.value(of: b[at + i]) == nil { return false }
        return Base64.value(of: b[at + 21])! & 0x0F == 0 && b[at + 22] == 0x3D && b[at + 23] == 0x3D
    }
}
