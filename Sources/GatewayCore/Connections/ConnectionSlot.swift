import Atomics
import CURCU

/// Life of a slot, all of it in this file's types and `Engine` (requestClose, reclaim):
///
/// ```
///  free --accept (Monitor)--------------------------------> open
///  free --connect (Monitor, links)--> connecting --SO_ERROR 0--> open
///                                     connecting --failed--> reset here, free (no other thread saw it)
///  open: graceful endings set a cause flag first and keep the slot open:
///        inputEnded (end of stream, stop) --Deal dealt the rest--> flushThenClose
///        flushThenClose (handler or core close) --Send sent the rest--> lingering (shut write side)
///        lingering --client's end of stream or 2 s--> requestClose
///  open: a hot restart's hand-over quiesces it through `handover` (Handover/HandoverStep.swift):
///        Receive stops reading, Deal dealing, Send writing, each in turn; then
///  open --the exporter, once all three stopped--> movingOut --sent--> closing (cause handedOver, no shutdown)
///                                                 movingOut --not sent--> open (resumed)
///  open --requestClose(cause): first one wins, closeCause set--> closing
///  closing --Monitor: unregister, shutdown(2)--> detached
///  detached --Deal: handler / core told, counted--> reclaiming --QSBR grace period,
///        liburcu's thread: rings released, fd closed, resetForReuse()--> free (generation + 1)
/// ```
///
/// Every flag that carries a cause stores `CloseCause.flag` (cause + 1, 0 = unset) and is
/// read with `slot.cause(\.field)`.
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

/// One connection's fixed-size record in the connection table. Fields are
/// grouped by the thread that owns them; the shared ones are atomics.
/// The two rings' positions are here; their descriptor storage comes from the table's
/// `RingPool` while in use (Memory/RingPool.swift).
struct ConnectionSlot {
    // Shared.
    var generation: UInt32.AtomicRepresentation
    var state: UInt8.AtomicRepresentation
    var monitorGate: UInt8.AtomicRepresentation
    var receiveGate: UInt8.AtomicRepresentation
    var dealGate: UInt8.AtomicRepresentation
    var sendGate: UInt8.AtomicRepresentation
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
    /// 1 once the connection counts against its address's limits (at accept, or after its
    /// PROXY header); `peer` is the address counted. Monitor releases it at detach.
    var addressCounted: UInt8.AtomicRepresentation
    /// A hot restart's drain: Monitor sets 1 when this client's *please reconnect* is due; Deal
    /// queues the frame and sets 2.
    var reconnectNotice: UInt8.AtomicRepresentation
    /// Deal holds output for this connection in its backlog: Send must not finish a graceful close.
    var backlogged: UInt8.AtomicRepresentation
    /// A hot restart's hand-over of this connection: a `HandoverStep` (0 none; each stage moves it on).
    var handover: UInt8.AtomicRepresentation
    /// Bytes Send has written to the socket since the connection opened; with Deal's `queuedBytes`
    /// it gives what waits for the socket (max_queued_bytes).
    var sentBytes: UInt64.AtomicRepresentation
    /// A transport other than plain (Transport/Transport.swift): its lock, taken by Receive and Send
    /// around their shared state; 1 once its opening (the WebSocket handshake) is done (Receive sets
    /// it); 1 while it has output of its own for Send (a pong).
    var transportLock: UInt8.AtomicRepresentation
    var transportReady: UInt8.AtomicRepresentation
    var transportOutput: UInt8.AtomicRepresentation

    // Set by Monitor at accept; read-only while the connection is open.
    var fd: Int32
    /// The client's address (as PROXY protocol gives it, behind a balancer), or the upstream server's.
    var peer: PeerAddress
    /// A `SlotKind`; for an uplink, its position among the configured links (its link number).
    var kind: UInt8
    var linkPosition: UInt16
    /// A `TransportKind`: what lies between the socket and the frames; and the listener that accepted it.
    var transport: UInt8
    var listenerIndex: UInt8

    // Receive's: a frame split across reads, being assembled.
    var assembly: FrameAssembly
    var lastReceiveTick: UInt64
    /// When the frame being assembled began (frame_timeout), or the connection opened
    /// while its PROXY header is awaited (proxy_timeout).
    var frameStartTick: UInt64
    /// The listener speaks the PROXY protocol and this connection's header has not come yet.
    var awaitingProxy: Bool
    /// Not read while the gateway sheds load (max_buffered_bytes); on Receive's parked list.
    var parked: Bool
    var receiveTimerGeneration: UInt32
    /// The receive timer now bounds a lingering close rather than idleness.
    var lingerTimed: Bool
    /// The receive timer bounds the transport's opening (the WebSocket handshake).
    var openingTimed: Bool
    var receiveTimer: TimerNode
    /// On Receive's RingSweep: the receive ring kept its storage at the end of a read.
    var receiveRingListed: Bool

    // Deal's.
    var dealOffset: UInt32
    /// `opened`: the handler or core heard of it; `ended`: a session the core closed or kicked,
    /// out of its uid, rooms and presence while its connection finishes.
    var ended: Bool
    /// Output beyond the send ring, and every byte ever queued for the socket (ring and backlog).
    var backlog: SendBacklog
    var queuedBytes: UInt64
    var opened: Bool
    /// Forwarding clients: `route` is the link the session was announced on (OPENED sent) when `routed`.
    var routed: Bool
    var route: UInt64
    /// Forwarding clients announced on a link: a doubly linked list per link (its upstream_lost
    /// notices), the frames forwarded on it and the seq of the last one.
    var routePrev: UInt32
    var routeNext: UInt32
    var routeFrames: UInt32
    var lastUpSeq: UInt32
    /// Pushes dropped (push_overflow drop) since the core was last told, and whether this session
    /// waits in Deal's list of notices to send.
    var pushDrops: UInt32
    var dropNoticeQueued: Bool
    /// Forwarding clients waiting for room on link `waitPosition`: a doubly linked list per link.
    var waiting: Bool
    var waitPosition: UInt16
    var waitPrev: UInt32
    var waitNext: UInt32
    /// The tick the client began waiting; past max_queue_wait it is `shed`: what it has queued is
    /// answered `overloaded`.
    var waitSince: UInt64
    var shed: Bool
    /// Users and rooms (Sessions/SessionDirectory): the uid the core bound it to, its
    /// neighbours in that uid's list, and its room memberships (links are index + 1).
    var bound: Bool
    var uid: UInt32
    var uidPrev: UInt32
    var uidNext: UInt32
    var roomsHead: UInt32
    var roomCount: UInt16
    /// Flood limits (Protection/FloodLimits): tokens left this second, and the tick they were counted at.
    var floodArmed: Bool
    var floodFrames: Double
    var floodBytes: Double
    var floodTick: UInt64
    /// On Deal's RingSweep: the send ring kept its storage at the end of a deal.
    var sendRingListed: Bool

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

/// Flags that hold a close cause store `flag` (0 means unset); `slot.cause(field)` reads one back.
extension CloseCause {
    var flag: UInt8 { UInt8(rawValue + 1) }
}

extension UnsafeMutablePointer where Pointee == ConnectionSlot {
    /// The cause a flag holds, or nil while it is unset.
    @inline(__always)
    func cause(_ field: WritableKeyPath<ConnectionSlot, UInt8.AtomicRepresentation>) -> CloseCause? {
        let value = atomic(field).load(ordering: .acquiring)
        return value == 0 ? nil : CloseCause(rawValue: Int(value) - 1)
    }

    /// The one reset for reuse, after the rings and the assembly were emptied and the descriptor closed:
    /// every flag and per-stage field back to its free value, then a new generation and
    /// `free`. Timer nodes stay linked (wheels drop stale entries by generation) and the
    /// RCU head belongs to liburcu.
    func resetForReuse() {
        for flag: WritableKeyPath<ConnectionSlot, UInt8.AtomicRepresentation> in
            [\.monitorGate, \.receiveGate, \.dealGate, \.sendGate, \.receivePaused, \.dealPaused,
             \.writeBlocked, \.inputEnded, \.flushThenClose, \.hangup, \.lingering, \.closeCause, \.addressCounted,
             \.reconnectNotice, \.backlogged, \.handover, \.transportLock, \.transportReady, \.transportOutput] {
            atomic(flag).store(0, ordering: .relaxed)
        }
        sentBytes.store(0, ordering: .relaxed)
        pointee.queuedBytes = 0
        pointee.routeFrames = 0
        pointee.pushDrops = 0
        pointee.dropNoticeQueued = false
        pointee.kind = SlotKind.client.rawValue
        pointee.transport = TransportKind.plain.rawValue
        pointee.openingTimed = false
        pointee.lingerTimed = false
        pointee.dealOffset = 0
        pointee.opened = false
        pointee.ended = false
        pointee.routed = false
        pointee.waiting = false
        pointee.shed = false
        pointee.bound = false
        pointee.floodArmed = false
        pointee.parked = false
        pointee.receiveRingListed = false
        pointee.sendRingListed = false
        pointee.awaitingProxy = false
        pointee.roomsHead = 0
        pointee.roomCount = 0
        pointee.writeOffset = 0
        generation.wrappingIncrement(ordering: .releasing)
        atomic(\.state).store(SlotState.free.rawValue, ordering: .releasing)
    }
}

/// Typed access to a slot's atomics without copying the record.
extension UnsafeMutablePointer where Pointee == ConnectionSlot {
    @inline(__always)
    func atomic(_ field: WritableKeyPath<ConnectionSlot, UInt8.AtomicRepresentation>) -> UnsafeAtomic<UInt8> {
        UnsafeAtomic(at: pointer(to: field)!)
    }

    @inline(__always)
    var sentBytes: UnsafeAtomic<UInt64> { UnsafeAtomic(at: pointer(to: \.sentBytes)!) }

    /// Bytes queued for the socket and not yet written (read by Deal, the producer).
    @inline(__always)
    var outstandingBytes: Int { Int(truncatingIfNeeded: pointee.queuedBytes &- sentBytes.load(ordering: .relaxed)) }

    @inline(__always)
    var generation: UnsafeAtomic<UInt32> { UnsafeAtomic(at: pointer(to: \.generation)!) }

    /// The stale-id guard: the slot still holds connection `id` (it was not closed and reused since
    /// the id was posted). Every stage checks it before acting on an id from its inbox.
    @inline(__always)
    func holds(_ id: ConnectionID) -> Bool { generation.load(ordering: .acquiring) == id.generation }

    /// What the slot holds (set by Monitor before the connection is open, then read-only).
    @inline(__always)
    var kind: SlotKind { SlotKind(rawValue: pointee.kind) ?? .client }

    @inline(__always)
    var state: SlotState {
        SlotState(rawValue: atomic(\.state).load(ordering: .acquiring))!
    }

    @inline(__always)
    func flag(_ field: WritableKeyPath<ConnectionSlot, UInt8.AtomicRepresentation>) -> Bool {
        atomic(field).load(ordering: .sequentiallyConsistent) != 0
    }
}
