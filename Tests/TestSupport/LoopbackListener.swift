import Foundation
import Glibc

/// A TCP socket listening on 127.0.0.1 at a port the kernel chose: how a test holds a port, learns a free
/// one, or serves a fake peer. Closed once, by `stop()` or at deinit; `stop()` also wakes a blocked accept.
public final class LoopbackListener: @unchecked Sendable {  // `closed` is guarded by `lock`
    public let fd: Int32
    public let port: Int
    private let lock = NSLock()
    private var closed = false

    public init(backlog: Int32 = 128) throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw POSIXError(.EMFILE) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && listen(fd, backlog) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard ok else {
            Glibc.close(fd)
            throw POSIXError(.EADDRINUSE)
        }
        self.fd = fd
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    /// The next connection (blocking), with the peer's IPv4 address; nil once stopped.
    public func accept() -> (fd: Int32, peer: String)? {
        var peer = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let client = withUnsafeMutablePointer(to: &peer) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.accept(fd, $0, &length) }
        }
        guard client >= 0 else { return nil }
        return (client, String(cString: inet_ntoa(peer.sin_addr)))
    }

    public func stop() {
        let first = lock.withLock {
            defer { closed = true }
            return !closed
        }
        guard first else { return }
        shutdown(fd, Int32(SHUT_RDWR))
        Glibc.close(fd)
    }

    deinit { stop() }
}
