import Glibc

/// Nonblocking TCP client sockets.
enum ClientSocket {
    enum Start {
        case started(Int32)
        case failed(Int32)
    }

    /// The address of a host already checked to be an IPv4 literal.
    static func address(host: String, port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = UInt16(port).bigEndian
        inet_pton(AF_INET, host, &address.sin_addr)
        return address
    }

    /// Starts a connect from `source` (if given), with TCP_NODELAY set so that requests
    /// never wait for Nagle. The outcome arrives as EPOLLOUT (or an error) on the descriptor.
    /// With `datagram`, a connected UDP socket (--transport udp): its connect completes at once, and the
    /// first EPOLLOUT opens it as for TCP.
    static func connect(to address: sockaddr_in, from source: sockaddr_in?, datagram: Bool = false) -> Start {
        let kind = datagram ? SOCK_DGRAM : SOCK_STREAM
        let type = Int32(kind.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let fd = socket(AF_INET, type, 0)
        guard fd >= 0 else { return .failed(errno) }
        var one: Int32 = 1
        if datagram {
            var buffer: Int32 = 1 << 20
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &buffer, socklen_t(MemoryLayout<Int32>.size))
        } else {
            setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        }
        if var source {
            // The port is chosen at connect, by the whole 4-tuple, not at bind: otherwise each
            // source address would hold a port for every connection still in TIME_WAIT.
            setsockopt(fd, Int32(IPPROTO_IP), Self.bindAddressNoPort, &one, socklen_t(MemoryLayout<Int32>.size))
            let rc = withUnsafePointer(to: &source) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
                }
            }
            if rc != 0 {
                let error = errno
                close(fd)
                return .failed(error)
            }
        }
        var address = address
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        let error = errno
        if rc == 0 || error == EINPROGRESS { return .started(fd) }
        close(fd)
        return .failed(error)
    }

    /// The outcome of a connect that was in progress: 0 or an errno value.
    static func pendingError(_ fd: Int32) -> Int32 {
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0 { return errno }
        return error
    }

    /// IP_BIND_ADDRESS_NO_PORT from linux/in.h (Linux 4.2), which Glibc's module does not export.
    private static let bindAddressNoPort: Int32 = 24

    static func describe(_ error: Int32) -> String { String(cString: strerror(error)) }
}
