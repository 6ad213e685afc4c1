import CLinux
import Glibc

/// A bound UDP socket (`--listen udp://HOST:PORT`), non-blocking. It joins an SO_REUSEPORT group, so
/// that worker processes each bind their own and the kernel keeps one client's datagrams on one of
/// them (it hashes the source address and port). Its buffers are asked to be large, since a datagram
/// that finds the receive buffer full is lost; the kernel caps them at net.core.rmem_max / wmem_max.
struct UDPSocket {
    let fd: Int32
    let port: Int

    static let bufferBytes: Int32 = 4 << 20

    init(host: String, port: Int) throws(SocketError) {
        let fd = try Listener.bound(host: host, port: port, type: SOCK_DGRAM, reusePort: true,
                                    naming: GatewayConfig.ListenAddress(host: host, port: port, udp: true))
        // Best effort: a smaller buffer only loses datagrams sooner under a burst.
        try? SocketOptions.setInt(fd, SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF", value: Self.bufferBytes)
        try? SocketOptions.setInt(fd, SOL_SOCKET, SO_SNDBUF, "SO_SNDBUF", value: Self.bufferBytes)
        do throws(SocketError) {
            self.port = Int(try Listener.boundAddress(fd).port)
        } catch {
            close(fd)
            throw error
        }
        self.fd = fd
    }
}
