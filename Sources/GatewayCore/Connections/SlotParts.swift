import Atomics

/// A slot's one-byte atomic flags, shared between threads. Only one-byte atomics live here:
/// `resetForReuse` clears the whole struct byte by byte, atomically, since a stale id still
/// in an inbox may open its gate on a slot being reclaimed.
struct SlotFlags {
    /// Set while the slot's id waits in that stage's inbox; its consumer clears it.
    var monitorGate: UInt8.AtomicRepresentation
    var receiveGate: UInt8.AtomicRepresentation
    var dealGate: UInt8.AtomicRepresentation
    var sendGate: UInt8.AtomicRepresentation
    /// A tls:// connection's gate into its TLS handshake thread's inbox (TLSHandshakeStage).
    var handshakeGate: UInt8.AtomicRepresentation
    /// Receive stopped reading because the receive ring was full; Deal resumes it.
    var receivePaused: UInt8.AtomicRepresentation
    /// Deal stopped dealing because the send ring was full; Send resumes it.
    var dealPaused: UInt8.AtomicRepresentation
    /// The socket's send buffer is full; Monitor posts to Send when it drains.
    var writeBlocked: UInt8.AtomicRepresentation
    /// How the connection ends: the close causes and the hang-up.
    var endings: SlotEndings
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
    /// A transport other than plain (Transport/Transport.swift): its lock, taken by Receive and Send
    /// around their shared state; 1 once its opening (the WebSocket handshake) is done (Receive sets
    /// it); 1 while it has output of its own for Send (a pong).
    var transportLock: UInt8.AtomicRepresentation
    var transportReady: UInt8.AtomicRepresentation
    var transportOutput: UInt8.AtomicRepresentation
}

/// Monitor's part of a slot: set as a whole at accept or connect, before the slot is open; read-only
/// (by every thread) while it is, except `peer`, which Receive sets from a PROXY header before any
/// other thread reads it.
struct MonitorPart {
    /// The client's address (as PROXY protocol gives it, behind a balancer), or the upstream server's.
    var peer = PeerAddress(ipv4: 0, port: 0)
    /// The connection's socket (-1 for a UDP session); closed only at reclamation.
    var fd: Int32 = -1
    /// For an uplink, its position among the configured links (its link number).
    var linkPosition: UInt16 = 0
    /// A `SlotKind`.
    var kind = SlotKind.client.rawValue
    /// A `TransportKind`: what lies between the socket and the frames; and the listener that accepted it.
    var transport = TransportKind.plain.rawValue
    var listenerIndex: UInt8 = 0

    init() {}

    var isClient: Bool { kind == SlotKind.client.rawValue }

    init(fd: Int32, peer: PeerAddress, kind: SlotKind = .client, linkPosition: UInt16 = 0,
         transport: TransportKind = .plain, listenerIndex: UInt8 = 0) {
        self.peer = peer
        self.fd = fd
        self.linkPosition = linkPosition
        self.kind = kind.rawValue
        self.transport = transport.rawValue
        self.listenerIndex = listenerIndex
    }
}

/// Receive's part of a slot.
struct ReceivePart {
    /// A frame split across reads, being assembled.
    var assembly = FrameAssembly()
    var lastReceiveTick: UInt64 = 0
    /// When the frame being assembled began (frame_timeout), or the connection opened
    /// while its PROXY header is awaited (proxy_timeout).
    var frameStartTick: UInt64 = 0
    /// The listener speaks the PROXY protocol and this connection's header has not come yet
    /// (Monitor sets it at accept, before the slot is open).
    var awaitingProxy = false
    /// Not read while the gateway sheds load (max_buffered_bytes); on Receive's parked list.
    var parked = false
    /// The receive timer now bounds a lingering close rather than idleness.
    var lingerTimed = false
    /// The receive timer bounds the transport's opening (the WebSocket handshake).
    var openingTimed = false
    /// On Receive's RingSweep: the receive ring kept its storage at the end of a read.
    var ringListed = false
}

/// Deal's part of a slot.
struct DealPart {
    /// Where dealing stopped in the first descriptor of the receive ring.
    var dealOffset: UInt32 = 0
    /// `opened`: the handler or core heard of it; `ended`: a session the core closed or kicked,
    /// out of its uid, rooms and presence while its connection finishes.
    var opened = false
    var ended = false
    /// Output beyond the send ring, and every byte ever queued for the socket (ring and backlog).
    var backlog = SendBacklog.empty
    var queuedBytes: UInt64 = 0
    /// Forwarding clients: `route` is the link the session was announced on (OPENED sent) when `routed`.
    var routed = false
    var route: UInt64 = 0
    /// Forwarding clients announced on a link: a doubly linked list per link (its upstream_lost
    /// notices), the frames forwarded on it and the seq of the last one.
    var routePrev = Uplinks.none
    var routeNext = Uplinks.none
    var routeFrames: UInt32 = 0
    var lastUpSeq: UInt32 = 0
    /// Pushes dropped (push_overflow drop) since the core was last told, and whether this session
    /// waits in Deal's list of notices to send.
    var pushDrops: UInt32 = 0
    var dropNoticeQueued = false
    /// Forwarding clients waiting for room on link `waitPosition`: a doubly linked list per link.
    var waiting = false
    var waitPosition: UInt16 = 0
    var waitPrev = Uplinks.none
    var waitNext = Uplinks.none
    /// The tick the client began waiting; past max_queue_wait it is `shed`: what it has queued is
    /// answered `overloaded`.
    var waitSince: UInt64 = 0
    var shed = false
    /// A hot restart (Sessions/AccessRole+Moves.swift): `moveState` 1 once MOVING went up, 2 once the
    /// core answered it; `adopted`, in the new process, a session that goes up under its old id.
    var moveState: UInt8 = 0
    var adopted = false
    /// Users and rooms (Sessions/SessionDirectory): the uid the core bound it to, its
    /// neighbours in that uid's list, and its first room membership.
    var bound = false
    var uid: UInt32 = 0
    var uidPrev = SessionDirectory.none
    var uidNext = SessionDirectory.none
    var roomsHead = SessionDirectory.none
    var roomCount: UInt16 = 0
    /// Flood limits (Protection/FloodLimits): tokens left this second, and the tick they were counted at.
    var floodArmed = false
    var floodFrames: Double = 0
    var floodBytes: Double = 0
    var floodTick: UInt64 = 0
    /// On Deal's RingSweep: the send ring kept its storage at the end of a deal.
    var ringListed = false
}

/// Send's part of a slot.
struct SendPart {
    /// How much of the first descriptor on the send ring is written (a partial write).
    var writeOffset: UInt32 = 0
}
