import Glibc

/// The socket options the engine sets, each failure reported rather than dropped.
enum SocketOptions {
    static func setInt(_ fd: Int32, _ level: Int32, _ name: Int32, _ what: String,
                       value: Int32 = 1) throws(SocketError) {
        var v = value
        guard setsockopt(fd, level, name, &v, socklen_t(MemoryLayout<Int32>.size)) == 0 else {
            throw SocketError("setsockopt(\(what))", errno)
        }
    }

    /// Small frames leave at once: the gateway gathers its own writes.
    static func noDelay(_ fd: Int32) throws(SocketError) {
        try setInt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, "TCP_NODELAY")
    }
}
