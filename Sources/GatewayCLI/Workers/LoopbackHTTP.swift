import CLinux
import Foundation
import Glibc

/// A small blocking HTTP/1.1 client for the master's requests to its workers' admin endpoints on
/// 127.0.0.1: one request per connection, bounded in time and size.
enum LoopbackHTTP {
    /// Largest answer read: a worker's /metrics is a few tens of KiB.
    static let maxBytes = 4 << 20

    struct Failure: Error, CustomStringConvertible {
        let description: String
    }

    /// The status and body of `method path` on 127.0.0.1:`port`, within `seconds` for each read and write.
    static func request(_ method: String, _ path: String, port: Int,
                        seconds: Int = 2) throws(Failure) -> (status: Int, body: String) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw Failure(description: "socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var limit = timeval(tv_sec: seconds, tv_usec: 0)
        for option in [SO_RCVTIMEO, SO_SNDTIMEO] {
            _ = setsockopt(fd, SOL_SOCKET, option, &limit, socklen_t(MemoryLayout<timeval>.size))
        }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        guard connected == 0 else {
            throw Failure(description: "connect 127.0.0.1:\(port): \(String(cString: strerror(errno)))")
        }
        let head = "\(method) \(path) HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        let request = Array(head.utf8)
        let sent = request.withUnsafeBytes { send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }
        guard sent == request.count else {
            throw Failure(description: "send to 127.0.0.1:\(port): \(String(cString: strerror(errno)))")
        }
        var answer: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while answer.count < maxBytes {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if n < 0, errno == EINTR { continue }
            guard n >= 0 else {
                throw Failure(description: "recv from 127.0.0.1:\(port): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            answer += chunk.prefix(n)
            if let parsed = parse(answer) { return parsed }
        }
        guard let parsed = parse(answer, ended: true) else {
            throw Failure(description: "127.0.0.1:\(port) answered no complete HTTP response")
        }
        return parsed
    }

    /// The response once whole: by Content-Length, chunks, or (`ended`) the end of the stream.
    static func parse(_ bytes: [UInt8], ended: Bool = false) -> (status: Int, body: String)? {
        let separator: [UInt8] = [13, 10, 13, 10]
        guard let headEnd = bytes.firstRange(of: separator) else { return nil }
        let head = String(decoding: bytes[..<headEnd.lowerBound], as: UTF8.self).lowercased()
        let lines = head.split(separator: "\r\n")
        let words = lines.first?.split(separator: " ") ?? []
        guard words.count >= 2, words[0].hasPrefix("http/1."), let status = Int(words[1]) else { return nil }
        let body = Array(bytes[headEnd.upperBound...])
        func header(_ name: String) -> String? {
            lines.dropFirst().first { $0.hasPrefix(name + ":") }.map {
                String($0.dropFirst(name.count + 1)).trimmingCharacters(in: .whitespaces)
            }
        }
        if let length = header("content-length").flatMap(Int.init), length >= 0 {
            guard body.count >= length else { return nil }
            return (status, String(decoding: body.prefix(length), as: UTF8.self))
        }
        if header("transfer-encoding") == "chunked" {
            var out: [UInt8] = []
            var at = 0
            while true {
                guard let lineEnd = body[at...].firstRange(of: [13, 10]) else { return nil }
                guard let size = Int(String(decoding: body[at..<lineEnd.lowerBound], as: UTF8.self), radix: 16),
                      size >= 0 else { return nil }
                if size == 0 { return (status, String(decoding: out, as: UTF8.self)) }
                let start = lineEnd.upperBound
                guard body.count >= start + size + 2 else { return nil }
                out += body[start..<start + size]
                at = start + size + 2
            }
        }
        return ended ? (status, String(decoding: body, as: UTF8.self)) : nil
    }
}
