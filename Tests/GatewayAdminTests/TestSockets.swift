import Foundation
import Glibc
// BlockingSocket (TestClient) and waitUntil, for every file of this target.
@_exported import TestSupport

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

struct HTTPError: Error, CustomStringConvertible {
    let description: String
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
    guard let split = raw.range(of: "\r\n\r\n") else { throw HTTPError(description: "no HTTP reply: \(raw)") }
    let lines = raw[..<split.lowerBound].components(separatedBy: "\r\n")
    let status = Int(lines[0].split(separator: " ")[1]) ?? 0
    var headers: [String: String] = [:]
    for line in lines.dropFirst() {
        guard let colon = line.firstIndex(of: ":") else { continue }
        headers[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
    }
    return HTTPReply(status: status, headers: headers, body: String(raw[split.upperBound...]))
}
