import Foundation
import GatewayCore
import Glibc

/// A loopback UDP client for the gateway's udp:// listeners (docs/UDP.md): a connected socket, so
/// that it hears only the gateway, with a receive timeout so that a lost datagram fails a test
/// rather than hanging it.
public final class UDPTestClient: @unchecked Sendable {  // used by one thread at a time
    public let fd: Int32
    /// Bytes sent and received so far (the anti-amplification tests compare them).
    public private(set) var bytesSent = 0
    public private(set) var bytesReceived = 0

    /// - Parameter source: a local 127.0.0.0/8 address to send from (another client to the gateway).
    public init(port: Int, source: String = "127.0.0.1", timeoutSeconds: Int = 5) throws {
        fd = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError("socket", errno) }
        var local = sockaddr_in()
        local.sin_family = sa_family_t(AF_INET)
        local.sin_addr.s_addr = inet_addr(source)
        var remote = sockaddr_in()
        remote.sin_family = sa_family_t(AF_INET)
        remote.sin_port = in_port_t(UInt16(port).bigEndian)
        remote.sin_addr.s_addr = inet_addr("127.0.0.1")
        let size = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafePointer(to: &local) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, size) }
        } == 0 && withUnsafePointer(to: &remote) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, size) }
        } == 0
        guard ok else {
            let e = errno
            Glibc.close(fd)
            throw SocketError("bind/connect", e)
        }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var buffer: Int32 = 4 << 20
        setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buffer, socklen_t(MemoryLayout<Int32>.size))
    }

    deinit { Glibc.close(fd) }

    /// The local port (the session's source port).
    public var port: Int {
        var a = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &a) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) } }
        return Int(UInt16(bigEndian: a.sin_port))
    }

    /// Sends one datagram.
    public func send(_ datagram: [UInt8]) throws {
        let n = datagram.withUnsafeBytes { Glibc.send(fd, $0.baseAddress, $0.count, 0) }
        guard n == datagram.count else { throw SocketError("send", errno) }
        bytesSent += n
    }

    /// The next datagram, or nil at the timeout.
    public func receive() -> [UInt8]? {
        var buffer = [UInt8](repeating: 0, count: 65_536)
        let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        guard n >= 0 else { return nil }
        bytesReceived += n
        return Array(buffer[..<n])
    }

    /// Every datagram already waiting, without blocking.
    public func drain() -> [[UInt8]] {
        var datagrams: [[UInt8]] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, Int32(MSG_DONTWAIT)) }
            guard n >= 0 else { return datagrams }
            bytesReceived += n
            datagrams.append(Array(buffer[..<n]))
        }
    }

    /// The frames of a datagram, in order.
    public static func frames(_ datagram: [UInt8]) -> [[UInt8]] {
        var frames: [[UInt8]] = []
        var at = 0
        while datagram.count - at >= FrameHeader.size {
            let length = datagram[at..<at + 4].reduce(0) { $0 << 8 | Int($1) }
            guard length >= FrameHeader.size, at + length <= datagram.count else { break }
            frames.append(Array(datagram[at..<at + length]))
            at += length
        }
        return frames
    }

    /// A token frame (cmd 0xFF04) at the head of `datagram`, if there is one.
    public static func token(_ datagram: [UInt8]) -> [UInt8]? {
        guard let first = frames(datagram).first, first.count == 26, first[8] == 0xFF, first[9] == 0x04 else {
            return nil
        }
        return first
    }
}
