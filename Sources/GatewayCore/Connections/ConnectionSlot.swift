import Atomics
import CURCU

/// Life of a slot: free -> open -> closing (a close was requested, the cause is
/// set) -> detached (Monitor unregistered it) -> reclaiming (Deal told the
/// handler and handed the slot to liburcu; after a grace period it is free).
/// An outbound link starts in `connecting` (Monitor owns it) and becomes `open` when connected.
enum SlotState: UInt8 {
    case free = 0, open, closing, detached, reclaiming, connecting
}

/// What a slot holds.
enum SlotKind: UInt8 {
    case client = 0
    /// A link this node opened to an upstream server (docs/LINK.md).
    case uplink = 1
}

/// One connection's fixed-size record in the connection table. Fields are
/// grouped by the thread that owns them; the shared ones are atomics.
/// The two rings' descriptor storage follows the record in memory.
struct ConnectionSlot {
    // Shared.
    var generation: UInt32.AtomicRepresentation
    var state: UInt8.AtomicRepresentation
    var monitorGate: UInt8.AtomicRepresentation
    var receiveGate: UInt8.AtomicRepresentation
    var dealGate: UInt8.AtomicRepresentation
    var sendGate: UInt8.AtomicRepresentation
    /// poll backend only: Receive wants to hear about readability again.
    var readArmed: UInt8.AtomicRepresentation
    /// Receive stopped reading because the receive ring was full; Deal resumes it.
    var receivePaused: UInt8.AtomicRepresentation
    /// Deal stopped dealing because the send ring was full; Send resumes it.
    var dealPaused: UInt8.AtomicRepresentation
    /// The socket's send buffer is full; Monitor posts to Send when it drains.
    var writeBlocked: UInt8.AtomicRepresentation
    /// Close cause + 1 once no more input will be dealt (end of stream, shutdown).
    var inputEnded: UInt8.AtomicRepresentation
    /// Close cause + 1: Send closes the connection once its send ring is empty.
    var flushThenClose: UInt8.AtomicRepresentation
    /// The peer hung up or the socket failed: Receive reads to the end even after a short read.
    var hangup: UInt8.AtomicRepresentation
    /// Close cause + 1 while a graceful close waits for the client's end of stream
    /// (our side is shut for writing); Receive discards what still arrives.
    var lingering: UInt8.AtomicRepresentation
    /// Written by the thread that moved the slot to `closing`.
    var closeCause: UInt8.AtomicRepresentation

    // Set by Monitor at accept; read-only while the connection is open.
    var fd: Int32
    var peerAddress: UInt32
    var peerPort: UInt16
    /// A `SlotKind`; for an uplink, its position among the configured links (its link number).
    var kind: UInt8
    var linkPosition: UInt16

    // Receive's: a frame split across reads, being assembled.
    var assembly: FrameAssembly
    var lastReceiveTick: UInt64
    var receiveTimerGeneration: UInt32
    /// The receive timer now bounds a lingering close rather than idleness.
    var lingerTimed: Bool
    var receiveTimer: TimerNode

    // Deal's.
    var dealOffset: UInt32
    var opened: Bool
    /// Forwarding clients: `route` is the link the session was announced on (OPENED sent) when `routed`.
    var routed: Bool
    var route: UInt64
    /// Forwarding clients waiting for room on link `waitPosition`: a doubly linked list per link.
    var waiting: Bool
    var waitPosition: UInt16
    var waitPrev: UInt32
    var waitNext: UInt32
    /// A link's dealing paused because this client's send ring was full; dealing this client resumes it.
    var blocksLink: Bool
    var blockedLinkPosition: UInt16

    // Send's.
    var writeOffset: UInt32
    var sendTimerGeneration: UInt32
    var sendTimer: TimerNode

    // Reclamation after a grace period.
    var rcuHead: rcu_head
    var table: UnsafeMutableRawPointer?

    var receiveIndices: FrameRing.Indices
    var sendIndices: FrameRing.Indices
}

/// Typed access to a slot's atomics without copying the record.
extension UnsafeMutablePointer where Pointee == ConnectionSlot {
    @inline(__always)
    func atomic(_ field: WritableKeyPath<ConnectionSlot, UInt8.AtomicRepresentation>) -> UnsafeAtomic<UInt8> {
        UnsafeAtomic(at: pointer(to: field)!)
    }

    @inline(__always)
    var generation: UnsafeAtomic<UInt32> { UnsafeAtomic(at: pointer(to: \.generation)!) }

    @inline(__always)
    var state: SlotState {
        SlotState(rawValue: atomic(\.state).load(ordering: .acquiring))!
    }

    @inline(__always)
    func flag(_ field: WritableKeyPath<ConnectionSlot, UInt8.AtomicRepresentation>) -> Bool {
        atomic(field).load(ordering: .sequentiallyConsistent) != 0
    }
}
