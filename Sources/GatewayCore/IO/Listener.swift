import CLinux
import Glibc

/// The listening socket: IPv4, non-blocking, SO_REUSEADDR.
struct Listener {
    let fd: Int32
    let port: Int

    init(host: String, port: Int, backlog: Int) throws(SocketError) {
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_port = in_port_t(UInt16(port).bigEndian)
        guard inet_pton(AF_INET, host, &addr.sin_addr) == 1 else { throw SocketError("inet_pton(\(host))", EINVAL) }
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SocketError("socket", gw_errno()) }
        do {
            try SocketOptions.setInt(fd, SOL_SOCKET, SO_REUSEADDR, "SO_REUSEADDR")
        } catch {
            close(fd)
            throw error
        }
        let bound = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0 else {
            let e = gw_errno()
            close(fd)
            throw SocketError("bind \(host):\(port)", e)
        }
        guard listen(fd, Int32(backlog)) == 0 else {
            let e = gw_errno()
            close(fd)
            throw SocketError("listen", e)
        }
        var actual = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &actual) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &len) }
        }
        self.fd = fd
        self.port = Int(UInt16(bigEndian: actual.sin_port))
    }
}

