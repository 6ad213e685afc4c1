import Atomics
import Glibc

/// A UDP session's state beside its slot (docs/UDP.md), reserved for every slot like the WebSocket
/// transport's and touched only when a slot serves a UDP client. Fields are grouped by owner.
struct UDPSession {
    // Monitor's, written before the session opens and read-only after: where replies go, the socket
    // they leave by, and the address's token.
    var address: sockaddr_in6
    var addressLength: UInt32
    var socket: Int32
    var token: UInt64

    // Monitor to Receive: the datagrams waiting, a ring of `UDPSession.queueCapacity` entries kept in
    // the transport's queue table. Monitor advances `tail`, Receive `head`; each entry is published
    // by the store of `tail` (releasing) and freed by the store of `head`.
    var head: UInt32.AtomicRepresentation
    var tail: UInt32.AtomicRepresentation
    /// Receive's: bytes of the head datagram already read (a read block with less room than it).
    var readOffset: UInt32

    // Monitor's, read by Send: bytes received in valid datagrams, and whether the address is proved.
    var received: UInt64.AtomicRepresentation
    var proven: UInt8.AtomicRepresentation

    // Send's: bytes sent (the bound counts them until the address is proved) and the packer's stream.
    var sent: UInt64
    var stream: DatagramPacker.Stream

    /// Datagrams that may wait for Receive per session; past it, arrivals are dropped (`queueFull`).
    static let queueCapacity = 16
}

/// One waiting datagram: a pool chunk and the bytes in it.
struct UDPQueueEntry {
    var chunk: UnsafeMutableRawPointer?
    var length: UInt32
}

extension UnsafeMutablePointer where Pointee == UDPSession {
    @inline(__always)
    func atomic(_ field: WritableKeyPath<UDPSession, UInt32.AtomicRepresentation>) -> UnsafeAtomic<UInt32> {
        UnsafeAtomic(at: pointer(to: field)!)
    }

    @inline(__always)
    var received: UnsafeAtomic<UInt64> { UnsafeAtomic(at: pointer(to: \.received)!) }

    @inline(__always)
    var proven: UnsafeAtomic<UInt8> { UnsafeAtomic(at: pointer(to: \.proven)!) }
}
