import CLinux
import Glibc

/// What lies between a connection's socket and its frame bytes (docs/TLS.md, "The transport
/// seam"). Plain TCP is no transport at all: Receive reads and Send writes the socket itself,
/// behind one predictable branch on the slot's `transport` byte. Any other kind (TLS; WebSocket
/// next) is an object shared by all connections of that kind, whose per-connection state hangs
/// off the slot (`transportState`), and which turns socket bytes into frame bytes in place:
/// `read` puts plaintext where a plain read would have put the socket's bytes, `write` takes
/// the same gather list a plain writev would have sent.
///
/// Threads: `open` and `read` run on Receive, `write` and `finish` on Send, `release` on the
/// reclaiming thread after a grace period. Receive and Send may call at the same time on one
/// connection: a transport whose state is not safe for that takes the slot's `transportLock`.
enum TransportKind: UInt8 {
    case plain = 0
    /// TLS, accepted on a tls:// listener.
    case tls = 1
    /// TLS on a link this node opened to a tls:// upstream.
    case tlsClient = 2
}

/// What Receive's `open` came to.
enum TransportOpening {
    /// Frames may flow (`transportReady` is set).
    case ready
    /// Waiting for the peer's bytes; `retry`: for room in the socket instead, so look again next tick.
    case pending(retry: Bool)
    case failed(CloseCause)
}

/// What a read came to.
enum TransportRead {
    case bytes(Int)
    /// Nothing more until the socket is readable again.
    case wouldBlock
    /// The peer ended the stream cleanly.
    case end
    case failed(CloseCause)
}

/// What a write came to.
enum TransportWrite {
    /// Bytes taken from the front of the iovecs; fewer than all: the socket is full, and its
    /// writability resumes Send.
    case wrote(Int)
    case failed(CloseCause)
}

protocol Transport: AnyObject {
    /// Receive, before the connection's first read and until it returns `.ready`: the opening
    /// exchange (a TLS handshake). Its deadline is Receive's (`transport_timeout` of the kind).
    func open(_ s: UnsafeMutablePointer<ConnectionSlot>) -> TransportOpening
    /// Receive: up to `count` frame bytes into `buffer`.
    func read(_ s: UnsafeMutablePointer<ConnectionSlot>, into buffer: UnsafeMutableRawPointer, count: Int)
        -> TransportRead
    /// Send, once ready: takes bytes from the front of the `count` iovecs.
    func write(_ s: UnsafeMutablePointer<ConnectionSlot>, _ iov: UnsafePointer<iovec>, count: Int) -> TransportWrite
    /// Send, before our side of the stream is shut: the transport's own goodbye (TLS close_notify).
    func finish(_ s: UnsafeMutablePointer<ConnectionSlot>)
    /// After the grace period, before the descriptor is closed: frees the per-connection state.
    func release(_ s: UnsafeMutablePointer<ConnectionSlot>)
    /// The kind's opening deadline, in ticks.
    var openTicks: UInt64 { get }
}

extension UnsafeMutablePointer where Pointee == ConnectionSlot {
    /// The transport's opening is done (Receive sets it; Send reads it before writing).
    @inline(__always)
    var transportIsReady: Bool { atomic(\.transportReady).load(ordering: .acquiring) != 0 }

    /// Takes the slot's transport lock; true if it had to wait (counted as contention by the caller).
    @inline(__always)
    func lockTransport() -> Bool {
        let lock = atomic(\.transportLock)
        if lock.exchange(1, ordering: .acquiring) == 0 { return false }
        var spins = 0
        repeat {
            while lock.load(ordering: .relaxed) != 0 {
                spins &+= 1
                if spins < 64 { gw_cpu_relax() } else { sched_yield() }
            }
        } while lock.exchange(1, ordering: .acquiring) != 0
        return true
    }

    @inline(__always)
    func unlockTransport() { atomic(\.transportLock).store(0, ordering: .releasing) }
}
