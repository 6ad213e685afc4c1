import Atomics
import CURCU

/// Where a slot is in its life; every change of it is a transition in SlotLife.swift.
enum SlotState: UInt8 {
    case free = 0, open, closing, detached, reclaiming, connecting
    /// Quiesced for a hot restart's hand-over: no stage acts on it, no close can start, while the
    /// exporter reads its state and sends its descriptor (Handover/ConnectionExport.swift).
    case movingOut
}

/// What a slot holds.
enum SlotKind: UInt8 {
    case client = 0
    /// A link this node opened to an upstream server (docs/LINK.md).
    case uplink = 1
    /// A link a lower node opened to this aggregation server.
    case downlink = 2
}

/// One connection's fixed-size record in the connection table. Fields are grouped by the
/// thread that owns them (SlotParts.swift); the shared ones are atomics. Everything a
/// connection changes is reset for the next one in `resetForReuse` (SlotLife.swift): the
/// flags byte by byte, each stage's part as a whole value.
/// The two rings' positions are here; their descriptor storage comes from the table's
/// `RingPool` while in use (Memory/RingPool.swift).
struct ConnectionSlot {
    // Shared: changed only through SlotLife.swift (generation, state) or atomically.
    var generation: UInt32.AtomicRepresentation
    var state: UInt8.AtomicRepresentation
    var flags: SlotFlags
    /// Bytes Send has written to the socket since the connection opened; with Deal's `queuedBytes`
    /// it gives what waits for the socket (max_queued_bytes).
    var sentBytes: UInt64.AtomicRepresentation

    /// Monitor's, Receive's, Deal's and Send's parts.
    var monitor: MonitorPart
    var receive: ReceivePart
    var deal: DealPart
    var send: SendPart

    // Kept across reuse: the timer nodes stay linked in their wheels, which drop a stale entry by
    // the generation it was armed for (Receive's and Send's, respectively).
    var receiveTimerGeneration: UInt32
    var receiveTimer: TimerNode
    var sendTimerGeneration: UInt32
    var sendTimer: TimerNode

    // Reclamation after a grace period (liburcu's).
    var rcuHead: rcu_head
    var table: UnsafeMutableRawPointer?

    /// The rings' indices: the receive ring's producer is Receive, the send ring's is Deal.
    var receiveIndices: FrameRing.Indices
    var sendIndices: FrameRing.Indices
}

/// Typed access to a slot's atomics without copying the record.
extension UnsafeMutablePointer where Pointee == ConnectionSlot {
    @inline(__always)
    func atomic(_ field: WritableKeyPath<SlotFlags, UInt8.AtomicRepresentation>) -> UnsafeAtomic<UInt8> {
        UnsafeAtomic(at: pointer(to: \.flags)!.pointer(to: field)!)
    }

    @inline(__always)
    var sentBytes: UnsafeAtomic<UInt64> { UnsafeAtomic(at: pointer(to: \.sentBytes)!) }

    /// Bytes queued for the socket and not yet written (read by Deal, the producer).
    @inline(__always)
    var outstandingBytes: Int {
        Int(truncatingIfNeeded: pointee.deal.queuedBytes &- sentBytes.load(ordering: .relaxed))
    }

    @inline(__always)
    var generation: UnsafeAtomic<UInt32> { UnsafeAtomic(at: pointer(to: \.generation)!) }

    /// The stale-id guard: the slot still holds connection `id` (it was not closed and reused since
    /// the id was posted). Every stage checks it before acting on an id from its inbox.
    @inline(__always)
    func holds(_ id: ConnectionID) -> Bool { generation.load(ordering: .acquiring) == id.generation }

    /// What the slot holds (set by Monitor before the connection is open, then read-only).
    @inline(__always)
    var kind: SlotKind { SlotKind(rawValue: pointee.monitor.kind) ?? .client }

    @inline(__always)
    func flag(_ field: WritableKeyPath<SlotFlags, UInt8.AtomicRepresentation>) -> Bool {
        atomic(field).load(ordering: .sequentiallyConsistent) != 0
    }
}
