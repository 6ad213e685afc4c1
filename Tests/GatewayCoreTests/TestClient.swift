import CLinux
import Foundation
import Glibc
@testable import GatewayCore

/// A blocking loopback client for end-to-end tests, with a receive timeout so
/// a broken gateway fails a test instead of hanging it.
final class TestClient {
    let fd: Int32

    init(port: Int, timeoutSeconds: Int = 5) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard rc == 0 else {
            let e = errno
            close(fd)
            throw SocketError("connect", e)
        }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    deinit { close(fd) }

    static func frame(seq: UInt32, cmd: UInt16 = 1, uid: UInt32 = 7, bodySize: Int) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: FrameHeader.size + bodySize)
        for i in 0..<bodySize { bytes[FrameHeader.size + i] = UInt8(truncatingIfNeeded: Int(seq) &* 31 &+ i) }
        bytes.withUnsafeMutableBytes {
            FrameHeader(length: UInt32($0.count), seq: seq, cmd: cmd, uid: uid).encode(into: $0.baseAddress!)
        }
        return bytes
    }

    func send(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw SocketError("send", errno) }
            sent += n
        }
    }

    /// Reads exactly `count` bytes; nil on end of stream, reset or timeout.
    func receive(_ count: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = out.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, count - got, 0) }
            if n <= 0 { return nil }
            got += n
        }
        return out
    }

    /// Reads one whole frame.
    func receiveFrame() -> [UInt8]? {
        guard let header = receive(FrameHeader.size) else { return nil }
        let length = Int(header.withUnsafeBytes { FrameHeader.length(at: $0.baseAddress!) })
        guard length >= FrameHeader.size else { return nil }
        guard let body = receive(length - FrameHeader.size) else { return nil }
        return header + body
    }

    /// True when the gateway closed the connection (end of stream or reset) within the timeout.
    func isClosedByPeer() -> Bool {
        var byte: UInt8 = 0
        while true {
            let n = recv(fd, &byte, 1, 0)
            if n == 0 { return true }
            if n < 0 { return errno == ECONNRESET }
        }
    }
}
