import CLinux
import Glibc

/// A listening socket, IPv4 or IPv6, non-blocking, SO_REUSEADDR. An IPv6 socket is
/// IPv6-only, except on the wildcard `::`, which also takes IPv4 (dual stack). With `reusePort` it joins
/// the SO_REUSEPORT group already listening there (ReusePortGroup).
struct Listener {
    let fd: Int32
    let port: Int
    var address: GatewayConfig.ListenAddress

    init(host: String, port: Int, backlog: Int, reusePort: Bool = false) throws(SocketError) {
        let fd = try Listener.bound(host: host, port: port, type: SOCK_STREAM, reusePort: reusePort,
                                    naming: GatewayConfig.ListenAddress(host: host, port: port))
        guard listen(fd, Int32(backlog)) == 0 else {
            let e = gw_errno()
            close(fd)
            throw SocketError("listen", e)
        }
        let actual: PeerAddress
        do throws(SocketError) {
            actual = try Listener.boundAddress(fd)
        } catch {
            close(fd)
            throw error
        }
        self.fd = fd
        self.port = Int(actual.port)
        address = GatewayConfig.ListenAddress(host: host, port: self.port)
    }

    /// A non-blocking socket of `type` bound to host:port with SO_REUSEADDR (and SO_REUSEPORT when asked);
    /// IPv6 is IPv6-only except on `::`. Closed again if any step fails.
    static func bound(host: String, port: Int, type: __socket_type, reusePort: Bool,
                      naming address: GatewayConfig.ListenAddress) throws(SocketError) -> Int32 {
        let v6 = host.contains(":")
        var storage = sockaddr_storage()
        let valid = withUnsafeMutablePointer(to: &storage) { p -> Bool in
            if v6 {
                return p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) {
                    $0.pointee.sin6_family = sa_family_t(AF_INET6)
                    $0.pointee.sin6_port = in_port_t(UInt16(port).bigEndian)
                    return inet_pton(AF_INET6, host, &$0.pointee.sin6_addr) == 1
                }
            }
            return p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                $0.pointee.sin_family = sa_family_t(AF_INET)
                $0.pointee.sin_port = in_port_t(UInt16(port).bigEndian)
                return inet_pton(AF_INET, host, &$0.pointee.sin_addr) == 1
            }
        }
        guard valid else { throw SocketError("inet_pton(\(host))", EINVAL) }
        let length = socklen_t(v6 ? MemoryLayout<sockaddr_in6>.size : MemoryLayout<sockaddr_in>.size)
        let flags = Int32(type.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let fd = socket(v6 ? AF_INET6 : AF_INET, flags, 0)
        guard fd >= 0 else { throw SocketError("socket", gw_errno()) }
        do {
            try SocketOptions.setInt(fd, SOL_SOCKET, SO_REUSEADDR, "SO_REUSEADDR")
            if reusePort { try SocketOptions.setInt(fd, SOL_SOCKET, SO_REUSEPORT, "SO_REUSEPORT") }
            if v6 {
                try SocketOptions.setInt(fd, Int32(IPPROTO_IPV6), IPV6_V6ONLY, "IPV6_V6ONLY", value: host == "::" ? 0 : 1)
            }
        } catch {
            close(fd)
            throw error
        }
        let rc = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) }
        }
        guard rc == 0 else {
            let e = gw_errno()
            close(fd)
            throw SocketError("bind \(address)", e)
        }
        return fd
    }

    /// A listening socket another process bound (hot restart, or a master process), shared with it:
    /// both may accept from its one queue, so no connection attempt is refused while it changes hands.
    init(adopting fd: Int32) throws(SocketError) {
        var listening: Int32 = 0
        var size = socklen_t(MemoryLayout<Int32>.size)
        guard getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &size) == 0 else {
            throw SocketError("getsockopt SO_ACCEPTCONN (descriptor \(fd))", gw_errno())
        }
        guard listening == 1 else { throw SocketError("descriptor \(fd) is not a listening socket", EINVAL) }
        // The flags belong to the shared open file: every holder accepts without blocking.
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0, fcntl(fd, F_SETFL, flags | O_NONBLOCK) == 0, fcntl(fd, F_SETFD, FD_CLOEXEC) == 0 else {
            throw SocketError("fcntl (descriptor \(fd))", gw_errno())
        }
        let bound = try Listener.boundAddress(fd)
        self.fd = fd
        port = Int(bound.port)
        address = GatewayConfig.ListenAddress(host: bound.host, port: port)
    }

    static func boundAddress(_ fd: Int32) throws(SocketError) -> PeerAddress {
        var actual = sockaddr_storage()
        var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
        let rc = withUnsafeMutablePointer(to: &actual) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        guard rc == 0 else { throw SocketError("getsockname", gw_errno()) }
        return Listener.peer(actual)
    }

    /// The address in a sockaddr_in or sockaddr_in6; an IPv4 client on a dual-stack socket
    /// (::ffff:a.b.c.d) is given as IPv4.
    static func peer(_ storage: sockaddr_storage) -> PeerAddress {
        var s = storage
        return withUnsafePointer(to: &s) { p in
            if Int32(p.pointee.ss_family) == AF_INET6 {
                return p.withMemoryRebound(to: sockaddr_in6.self, capacity: 1) { a -> PeerAddress in
                    var raw = (UInt64(0), UInt64(0))
                    withUnsafeMutableBytes(of: &raw) { dst in
                        withUnsafeBytes(of: a.pointee.sin6_addr) { dst.copyMemory(from: $0) }
                    }
                    let port = UInt16(bigEndian: a.pointee.sin6_port)
                    let mappedPrefix: [UInt8] = [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF]
                    let mapped = withUnsafeBytes(of: raw) { $0.prefix(12).elementsEqual(mappedPrefix) }
                    if mapped {
                        let v4 = withUnsafeBytes(of: raw) { $0.loadUnaligned(fromByteOffset: 12, as: UInt32.self) }
                        return PeerAddress(ipv4: v4, port: port)
                    }
                    return PeerAddress(family: 6, port: port, bytes: raw)
                }
            }
            return p.withMemoryRebound(to: sockaddr_in.self, capacity: 1) {
                PeerAddress(ipv4: $0.pointee.sin_addr.s_addr, port: UInt16(bigEndian: $0.pointee.sin_port))
            }
        }
    }
}
