import Foundation
import GatewayCore
import Glibc

/// The one blocking loopback client of every test target: receive and send timeouts, so a broken
/// server fails a test instead of hanging it. `BlockingSocket` (HTTP to the admin endpoint) and
/// `EchoSocket` (one-frame echoes against a gateway process) are its older names.
public final class TestClient: @unchecked Sendable {  // used by one thread at a time
    public private(set) var fd: Int32

    /// - Parameter receiveBuffer: SO_RCVBUF set before connecting (a small one makes a slow reader).
    /// - Parameter source: a local address to connect from (another 127.0.0.0/8 address looks
    ///   like another client to per-address limits).
    /// - Parameter host: 127.0.0.1, or an IPv6 address such as ::1.
    public init(port: Int, timeoutSeconds: Int = 5, receiveBuffer: Int32? = nil, source: String? = nil,
                host: String = "127.0.0.1") throws {
        let v6 = host.contains(":")
        fd = socket(v6 ? AF_INET6 : AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError("socket", errno) }
        func fail(_ call: String) -> SocketError {
            let e = errno
            Glibc.close(fd)
            return SocketError(call, e)
        }
        if var size = receiveBuffer {
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, socklen_t(MemoryLayout<Int32>.size))
        }
        if let source {
            var local = Self.address(source, port: 0)
            let bound = withUnsafePointer(to: &local.0) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, local.1) }
            }
            guard bound == 0 else { throw fail("bind \(source)") }
        }
        var remote = Self.address(host, port: port)
        let rc = withUnsafePointer(to: &remote.0) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, remote.1) }
        }
        guard rc == 0 else { throw fail("connect") }
        var tv = timeval(tv_sec: timeoutSeconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
    }

    /// `BlockingSocket(host:port:)`, as the admin tests spell it.
    public convenience init(host: String, port: Int) throws {
        try self.init(port: port, host: host)
    }

    deinit { close() }

    /// A sockaddr_in or sockaddr_in6 for `host`, with its length.
    private static func address(_ host: String, port: Int) -> (sockaddr_storage, socklen_t) {
        var storage = sockaddr_storage()
        if host.contains(":") {
            withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                    $0.pointee.sin6_family = sa_family_t(AF_INET6)
                    $0.pointee.sin6_port = in_port_t(UInt16(port).bigEndian)
                    _ = inet_pton(AF_INET6, host, &$0.pointee.sin6_addr)
                }
            }
            return (storage, socklen_t(MemoryLayout<sockaddr_in6>.size))
        }
        withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                $0.pointee.sin_family = sa_family_t(AF_INET)
                $0.pointee.sin_port = in_port_t(UInt16(port).bigEndian)
                $0.pointee.sin_addr.s_addr = inet_addr(host)
            }
        }
        return (storage, socklen_t(MemoryLayout<sockaddr_in>.size))
    }

    /// Closes the socket (idempotent).
    public func close() {
        if fd >= 0 {
            Glibc.close(fd)
            fd = -1
        }
    }

    /// Makes the next `close()` send a reset (SO_LINGER with a zero timeout).
    public func resetOnClose() {
        var lingering = linger(l_onoff: 1, l_linger: 0)
        setsockopt(fd, SOL_SOCKET, SO_LINGER, &lingering, socklen_t(MemoryLayout<linger>.size))
    }

    /// Half-closes: the gateway sees end of stream, this side may still read.
    public func shutdownWrite() {
        shutdown(fd, Int32(SHUT_WR))
    }

    public static func frame(seq: UInt32, cmd: UInt16 = 1, uid: UInt32 = 7, bodySize: Int) -> [UInt8] {
        var body = [UInt8](repeating: 0, count: bodySize)
        for i in 0..<bodySize { body[i] = UInt8(truncatingIfNeeded: Int(seq) &* 31 &+ i) }
        return frame(seq: seq, cmd: cmd, uid: uid, body: body)
    }

    public static func frame(seq: UInt32, cmd: UInt16 = 1, status: UInt32 = 0, uid: UInt32 = 7, body: [UInt8]) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: FrameHeader.size + body.count)
        bytes.withUnsafeMutableBytes {
            FrameHeader(length: UInt32($0.count), seq: seq, cmd: cmd, status: status, uid: uid).encode(into: $0.baseAddress!)
        }
        bytes.replaceSubrange(FrameHeader.size..., with: body)
        return bytes
    }

    /// A header claiming `length`, followed by `extra` filler bytes (for bad-length frames).
    public static func rawHeader(length: UInt32, seq: UInt32 = 0, extra: Int = 14) -> [UInt8] {
        var bytes = [UInt8](repeating: 0x5A, count: 4 + extra)
        withUnsafeBytes(of: length.bigEndian) { bytes.replaceSubrange(0..<4, with: $0) }
        return bytes
    }

    public func send(_ bytes: [UInt8]) throws {
        var sent = 0
        while sent < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { throw SocketError("send", errno) }
            sent += n
        }
    }

    /// Why the last `receive` returned nil: 0 for end of stream, else errno (EAGAIN: timed out).
    public private(set) var lastError: Int32 = 0

    /// Reads exactly `count` bytes; nil on end of stream, reset or timeout (see `lastError`).
    public func receive(_ count: Int) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = out.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, count - got, 0) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 {
                lastError = n == 0 ? 0 : errno
                return nil
            }
            got += n
        }
        return out
    }

    /// True when the last nil from `receive` was the gateway closing (end of stream or reset), not a timeout.
    public var lastNilWasClose: Bool { lastError == 0 || lastError == ECONNRESET }

    /// Reads one whole frame.
    public func receiveFrame() -> [UInt8]? {
        guard let header = receive(FrameHeader.size) else { return nil }
        let length = Int(header.withUnsafeBytes { FrameHeader.length(at: $0.baseAddress!) })
        guard length >= FrameHeader.size else { return nil }
        if length == FrameHeader.size { return header }
        guard let body = receive(length - FrameHeader.size) else { return nil }
        return header + body
    }

    /// Sends `request` and checks that the identical frame comes back.
    public func echoes(_ request: [UInt8]) -> Bool {
        guard (try? send(request)) != nil else { return false }
        return receiveFrame() == request
    }

    /// The frames that arrive before the echo of a heartbeat sent now (what the gateway queued
    /// for this client so far), or nil if the echo never comes.
    public func framesBeforeHeartbeatEcho() -> [[UInt8]]? {
        let beat = TestClient.frame(seq: 0xBEA7, cmd: ReservedCommand.heartbeat, bodySize: 0)
        guard (try? send(beat)) != nil else { return nil }
        var frames: [[UInt8]] = []
        while let f = receiveFrame() {
            if f == beat { return frames }
            frames.append(f)
        }
        return nil
    }

    /// Whether `frame` is the gateway's upstream_lost notice (docs/PROTOCOL.md).
    public static func isUpstreamLost(_ frame: [UInt8]) -> Bool {
        let h = frame.withUnsafeBytes { FrameHeader(decoding: $0.baseAddress!) }
        return h.cmd == ReservedCommand.upstreamLost && h.status == GatewayStatus.upstreamLost
    }

    /// True when the gateway closed the connection (end of stream or reset) within the timeout.
    /// Reads and discards whatever arrives before that.
    public func isClosedByPeer() -> Bool {
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n == 0 { return true }
            if n < 0 {
                if errno == EINTR { continue }
                return errno == ECONNRESET
            }
        }
    }

    /// Sends `bytes` while reading `expect` bytes back, never blocking on either
    /// direction (so a big pipelined exchange cannot deadlock on full buffers).
    /// Nil on end of stream, error, or when `timeoutSeconds` pass.
    public func exchange(_ bytes: [UInt8], expect: Int, timeoutSeconds: Double = 10) -> [UInt8]? {
        var out = [UInt8](repeating: 0, count: expect)
        var sent = 0
        var got = 0
        let deadline = Date().addingTimeInterval(timeoutSeconds)
        while got < expect || sent < bytes.count {
            let leftMs = Int32(deadline.timeIntervalSinceNow * 1000)
            if leftMs <= 0 { return nil }
            var pfd = pollfd(fd: fd, events: Int16(POLLIN) | (sent < bytes.count ? Int16(POLLOUT) : 0), revents: 0)
            let r = poll(&pfd, 1, min(leftMs, 500))
            if r < 0 && errno != EINTR { return nil }
            if r <= 0 { continue }
            if sent < bytes.count && pfd.revents & Int16(POLLOUT) != 0 {
                let n = bytes.withUnsafeBytes {
                    Glibc.send(fd, $0.baseAddress! + sent, bytes.count - sent, Int32(MSG_NOSIGNAL | MSG_DONTWAIT))
                }
                if n > 0 { sent += n } else if n < 0 && errno != EAGAIN && errno != EINTR { return nil }
            }
            if pfd.revents & Int16(POLLIN | POLLHUP | POLLERR) != 0 {
                if got == expect { return nil }  // more than expected, or a close
                let n = out.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, expect - got, Int32(MSG_DONTWAIT)) }
                if n > 0 { got += n } else if n == 0 || (errno != EAGAIN && errno != EINTR) { return nil }
            }
        }
        return out
    }

    /// Everything until the server closes (or a reset, or the timeout).
    public func receiveToEnd() -> [UInt8] {
        var out: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let n = chunk.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
            if n < 0 && errno == EINTR { continue }
            if n <= 0 { return out }
            out += chunk[0..<n]
        }
    }

    /// This end's port: how /proc/net/tcp names the connection.
    public var localPort: UInt16 {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return UInt16(bigEndian: address.sin_port)
    }

    /// Sends one small frame numbered `seq`: true when the identical frame came back, false when the
    /// server closed the connection; throws on anything else (a timeout).
    public func echo(_ seq: UInt32) throws -> Bool {
        let request = Self.frame(seq: seq, uid: 0, body: [1, 2, 3, 4])
        guard (try? send(request)) != nil else { return false }
        guard let reply = receive(request.count) else {
            if lastNilWasClose { return false }
            throw SocketError("recv", lastError)
        }
        return reply == request
    }
}

/// The admin tests' name for it.
public typealias BlockingSocket = TestClient
/// The gateway process tests' name for it.
public typealias EchoSocket = TestClient
