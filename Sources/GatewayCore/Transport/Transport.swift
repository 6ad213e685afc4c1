import CLinux
import Glibc

/// What lies between a connection's socket and its frame bytes. Plain TCP is no transport at
/// all: Receive reads and Send writes the socket itself, behind one predictable branch on the
/// slot's `transport` byte. Any other kind (WebSocket, TLS) is an object shared by all
/// connections of that kind, which turns socket bytes into frame bytes in place: `read` puts
/// frame bytes where a plain read would have put the socket's, `write` takes the same gather
/// list a plain writev would have sent.
///
/// Threads: `open` and `read` run on Receive, `write` and `finish` on Send, `release` on the
/// reclaiming thread after a grace period. Receive and Send may call at the same time on one
/// connection: a transport whose shared state is not safe for that takes the slot's `transportLock`.
enum TransportKind: UInt8 {
    case plain = 0
    case webSocket = 1
    /// TLS, accepted on a tls:// listener (docs/TLS.md).
    case tls = 2
    /// TLS on a link this node opened to a tls:// upstream.
    case tlsClient = 3
    /// WebSocket over TLS, accepted on a wss:// listener (WebSocketTransport on the TLS transport's records).
    case webSocketTLS = 4
    /// A UDP session (docs/UDP.md): no descriptor of its own, datagrams on a shared socket.
    case udp = 5
}

/// What Receive's `open` came to.
enum TransportOpening {
    /// Frames may flow (`transportReady` is set).
    case ready
    /// Waiting for the peer's bytes.
    case pending
    /// Waiting for room in the socket (a TLS handshake's flight): look again at the next tick.
    case retry
    /// Another thread takes the opening on (a TLS handshake thread); it resumes reading and hands the
    /// connection back to Receive once it is ready.
    case handedOff
    case failed(CloseCause)
}

/// What a read came to.
enum TransportRead {
    case bytes(Int)
    /// Nothing more until the socket is readable again.
    case wouldBlock
    /// The peer ended the stream cleanly.
    case end
    /// Only the transport's own frames came (a ping): no frame bytes, but the peer is alive.
    case control
    case failed(CloseCause)
}

/// What a write came to.
enum TransportWrite {
    /// Frame bytes taken from the front of the iovecs; fewer than all: the socket is full, and its
    /// writability resumes Send.
    case wrote(Int)
    case failed(CloseCause)
}

protocol Transport: AnyObject {
    /// Receive, before the connection's first read and until it returns `.ready`: the opening
    /// exchange (a TLS or WebSocket handshake, or both), bounded by `openTicks` from the first turn.
    func open(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) -> TransportOpening
    /// Receive: up to `count` frame bytes into `buffer`.
    func read(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>, into buffer: UnsafeMutableRawPointer,
              count: Int) -> TransportRead
    /// Send, once ready: takes frame bytes from the front of the `count` iovecs (none: only the
    /// transport's own output, when `transportOutput` is set).
    func write(_ s: UnsafeMutablePointer<ConnectionSlot>, _ iov: UnsafePointer<iovec>, count: Int) -> TransportWrite
    /// Send, before our side of the stream is shut: the transport's own goodbye.
    func finish(_ s: UnsafeMutablePointer<ConnectionSlot>, cause: CloseCause)
    /// After the grace period, before the descriptor is closed: frees the per-connection state.
    func release(_ s: UnsafeMutablePointer<ConnectionSlot>, index: UInt32)
    /// The opening's deadline, in ticks, and the cause of a close when it passes (Receive).
    func openTicks(_ s: UnsafeMutablePointer<ConnectionSlot>) -> UInt64
    func openTimeoutCause(_ s: UnsafeMutablePointer<ConnectionSlot>) -> CloseCause
}

extension UnsafeMutablePointer where Pointee == ConnectionSlot {
    /// The transport's opening is done (Receive sets it; Send reads it before writing).
    @inline(__always)
    var transportIsReady: Bool { atomic(\.transportReady).load(ordering: .acquiring) != 0 }

    /// Takes the slot's transport lock (held by the other side for a few instructions, or for TLS one
    /// record's crypto and one syscall); true if it had to wait (TLS counts that as contention).
    @inline(__always) @discardableResult
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
