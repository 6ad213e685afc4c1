import Foundation
import Glibc

struct SocketError: Error, CustomStringConvertible {
    let call: String
    let code: Int32
    var description: String { "\(call): \(String(cString: strerror(code)))" }
}

/// A blocking TCP client with 5 s timeouts, so that a broken server fails a test instead of hanging it.
final class BlockingSocket {
    private var fd: Int32

    init(host: String = "127.0.0.1", port: Int) throws {
        let v6 = host.contains(":")
        fd = socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError(call: "socket", code: errno) }
        var storage = sockaddr_storage()
        let length: socklen_t
        if v6 {
            length = withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                    $0.pointee.sin6_family = sa_family_t(AF_INET6)
                    $0.pointee.sin6_port = in_port_t(UInt16(port).bigEndian)
                    _ = inet_pton(AF_INET6, host, &$0.pointee.sin6_addr)
                    return socklen_t(MemoryLayout<sockaddr_in6>.size)
                }
            }
        } else {
            length = withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                    $0.pointee.sin_family = sa_family_t(AF_INET)
                    $0.pointee.sin_port = in_port_t(UInt16(port).bigEndian)
                    $0.pointee.sin_addr.s_addr = inet_addr(host)
                    return socklen_t(MemoryLayout<sockaddr_in>.size)
                }
            }
        }
        let rc = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, length) }
        }
        guard rc == 0 else {
            let e = errno
            close()
            throw SocketError(call: "connect \(host) \(port)", code: e)
        }
        var tv = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close() }

    /// Closes the socket (idempotent): the server sees the peer close.
    func close() {
        if fd >= 0 {
            Glibc.close(fd)
            fd = -1
        }
    }

    func send(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL))
            }
            guard n > 0 else { throw SocketError(call: "send", code: errno) }
            sent += n
        }
    }

    /// Exactly `count` bytes; nil on end of stream, error or timeout.
    func receive(_ count: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = out.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, count - got, 0) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return nil }
            got += n
        }
        return out
    }

    /// Everything until the server closes (or a reset, or the timeout).
    func receiveToEnd() -> [UInt8] {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return out }
            out += chunk[0..<n]
        }
    }
}

/// A gateway frame (docs/PROTOCOL.md): an 18-byte big-endian header, then the body.
func frame(seq: UInt32, cmd: UInt16 = 1, uid: UInt32 = 7, length: Int) -> [UInt8] {
    var bytes: [UInt8] = []
    func put<T: FixedWidthInteger>(_ value: T) { withUnsafeBytes(of: value.bigEndian) { bytes += $0 } }
    put(UInt32(length))
    put(seq)
    put(cmd)
    put(UInt32(0))
    put(uid)
    bytes += (0..<(length - 18)).map { UInt8(truncatingIfNeeded: Int(seq) &* 31 &+ $0) }
    return bytes
}

struct HTTPReply {
    let status: Int
    /// Header names lowercased.
    let headers: [String: String]
    let body: String
}

/// One request on its own connection (Connection: close), read to the end.
func http(_ method: String, _ path: String, port: Int, host: String = "127.0.0.1") throws -> HTTPReply {
    let socket = try BlockingSocket(host: host, port: port)
    try socket.send(Array("\(method) \(path) HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n".utf8))
    let raw = String(decoding: socket.receiveToEnd(), as: UTF8.self)
    guard let split = raw.range(of: "\r\n\r\n") else { throw SocketError(call: "no HTTP reply: \(raw)", code: 0) }
    let lines = raw[..<split.lowerBound].components(separatedBy: "\r\n")
    let status = Int(lines[0].split(separator: " ")[1]) ?? 0
    var headers: [String: String] = [:]
    for line in lines.dropFirst() {
        guard let colon = line.firstIndex(of: ":") else { continue }
        headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
    return HTTPReply(status: status, headers: headers, body: String(raw[split.upperBound...]))
}

/// Polls `condition` every 10 ms for up to `seconds`.
func waitUntil(seconds: Double = 5, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while Date() < deadline {
        if condition() { return true }
        usleep(10_000)
    }
    return condition()
}
