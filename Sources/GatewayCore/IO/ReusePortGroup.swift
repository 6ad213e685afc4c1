import CLinux
import Glibc

/// One listening socket per worker on the same address, an SO_REUSEPORT group, which the kernel spreads
/// new connections over (docs/OPERATIONS.md, "Workers"). A master creates and holds every socket of the
/// group, so a socket outlives its worker: connections that reach it while the worker is down wait in its
/// queue for the replacement, which inherits the same socket.
public enum ReusePortGroup {
    /// `count` listening sockets on `address`. The first binds as a single gateway does, so an address in
    /// use by anyone stops start-up; it then allows SO_REUSEPORT, and the others join it on its port.
    public static func bind(_ address: GatewayConfig.ListenAddress, backlog: Int,
                            count: Int) throws(SocketError) -> [Int32] {
        let first = try Listener(host: address.host, port: address.port, backlog: backlog)
        return try extend([first.fd], to: count, backlog: backlog)
    }

    /// The sockets of one address grown to at least `count`: each may be shared (SO_REUSEPORT, which a
    /// listening socket can be given later, as a single gateway's is when workers take it over), and
    /// new ones join their group. On failure the new ones are closed, the given ones kept.
    public static func extend(_ sockets: [Int32], to count: Int, backlog: Int) throws(SocketError) -> [Int32] {
        precondition(!sockets.isEmpty, "a group grows from at least one socket")
        for fd in sockets { try SocketOptions.setInt(fd, SOL_SOCKET, SO_REUSEPORT, "SO_REUSEPORT") }
        let bound = try Listener.boundAddress(sockets[0])
        var group = sockets
        do throws(SocketError) {
            while group.count < count {
                let joined = try Listener(host: bound.host, port: Int(bound.port), backlog: backlog, reusePort: true)
                group.append(joined.fd)
            }
        } catch {
            for fd in group.dropFirst(sockets.count) { close(fd) }
            throw error
        }
        return group
    }

    /// From now on every new connection to the group of `fd` goes to one of its first `count` sockets, at
    /// random: the kernel's own hash would spread over every socket, including those of workers a hot
    /// restart no longer runs. Random or hashed, the spread is the same (binomial; docs/OPERATIONS.md).
    public static func steer(_ fd: Int32, count: Int) throws(SocketError) {
        guard gw_reuseport_steer(fd, UInt32(count)) == 0 else {
            throw SocketError("setsockopt(SO_ATTACH_REUSEPORT_CBPF)", gw_errno())
        }
    }

    /// Listening sockets grouped by the address they are bound to, in order of first appearance, each
    /// group in the order given (for a master's, the order its sockets joined their group).
    public static func byAddress(_ sockets: [Int32]) throws(SocketError) -> [[Int32]] {
        var addresses: [String] = []
        var groups: [[Int32]] = []
        for fd in sockets {
            let address = try Listener.boundAddress(fd).description
            if let i = addresses.firstIndex(of: address) {
                groups[i].append(fd)
            } else {
                addresses.append(address)
                groups.append([fd])
            }
        }
        return groups
    }
}
