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

    /// Starts a connect, with TCP_NODELAY set so that requests never wait for Nagle.
    /// The outcome arrives as EPOLLOUT (or an error) on the descriptor.
    static func connect(to address: sockaddr_in) -> Start {
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let fd = socket(AF_INET, type, 0)
        guard fd >= 0 else { return .failed(errno) }
        var one: Int32 = 1
        setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
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

    static func describe(_ error: Int32) -> String { String(cString: strerror(error)) }
}
