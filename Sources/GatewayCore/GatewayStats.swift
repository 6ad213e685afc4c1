/// Why a connection was closed; counted per cause.
public enum CloseCause: Int, CaseIterable, Sendable, CustomStringConvertible {
    /// The client closed or reset.
    case peer
    /// Nothing received for `idle_timeout`.
    case idle
    /// A frame length outside 18...max_frame.
    case protocolError
    /// Accepted while every slot was in use.
    case overCapacity
    /// The client stopped reading and its send ring stayed full.
    case slowConsumer
    /// A socket error other than a reset.
    case ioError
    /// The application handler asked for it.
    case handler
    /// The gateway is stopping.
    case shutdown
    /// The upstream (core) asked for it with CLOSED; for a link, its upstream side went away.
    case upstream
    /// A link whose HELLO was refused: bad version or role, or no upstream link up yet.
    case linkRefused
    /// The core closed it with KICK.
    case kicked
    /// Not bound to a uid by the core within `auth_timeout`.
    case authTimeout
    /// A frame begun and not completed within `frame_timeout`.
    case frameTimeout
    /// It held the most bytes of incomplete frames when all of them passed `max_pending_bytes`.
    case pendingBytes
    /// Refused at accept: its address is denied, or not allowed.
    case denied
    /// Refused at accept: `max_conns_per_ip` connections from its address are open.
    case perAddress
    /// Refused at accept: its address opened more than `conn_rate_per_ip` connections a second.
    case addressRate
    /// Refused at accept: the listener took more than `accept_rate` connections a second.
    case acceptRate
    /// It sent more than `flood_frames_per_s` frames or `flood_bytes_per_s` bytes a second.
    case flood
    /// On a `proxy_protocol` listener: no valid PROXY header within `proxy_timeout`.
    case proxyHeader
    /// A WebSocket listener's client: its handshake was refused or did not finish in time, or it broke
    /// the framing rules (docs/WEBSOCKET.md); the close frame carries the code.
    case webSocket
    /// On a TLS listener: the first bytes were not a TLS handshake (a plaintext frame, say).
    case tlsPlaintext
    /// The TLS handshake failed (a malformed ClientHello, no cipher in common) or was abandoned.
    case tlsHandshake
    /// The TLS client offered only versions below 1.2.
    case tlsVersion
    /// The peer's certificate was missing or not trusted (tls_client_ca, upstream_ca).
    case tlsCertificate
    /// The TLS handshake did not finish within `tls_handshake_timeout`.
    case tlsHandshakeTimeout
    /// `tls_max_handshakes` handshakes were already in progress.
    case tlsMaxHandshakes
    /// A TLS record failed after the handshake (bad MAC, unexpected message).
    case tlsRecord
    /// Handed over to the process that took this one over (docs/HANDOVER.md): not closed, moved.
    case handedOver

    /// Refused at accept, before the connection was served: the admin side counts these as refusals.
    public var isRefusal: Bool {
        switch self {
        case .overCapacity, .denied, .perAddress, .addressRate, .acceptRate: true
        default: false
        }
    }

    public var description: String {
        switch self {
        case .peer: "peer"
        case .idle: "idle"
        case .protocolError: "protocol"
        case .overCapacity: "over_capacity"
        case .slowConsumer: "slow_consumer"
        case .ioError: "io_error"
        case .handler: "handler"
        case .shutdown: "shutdown"
        case .upstream: "upstream"
        case .linkRefused: "link_refused"
        case .kicked: "kicked"
        case .authTimeout: "auth_timeout"
        case .frameTimeout: "frame_timeout"
        case .pendingBytes: "pending_bytes"
        case .denied: "denied"
        case .perAddress: "max_conns_per_ip"
        case .addressRate: "conn_rate_per_ip"
        case .acceptRate: "accept_rate"
        case .flood: "flood"
        case .proxyHeader: "proxy_header"
        case .webSocket: "websocket"
        case .tlsPlaintext: "tls_not_tls"
        case .tlsHandshake: "tls_handshake"
        case .tlsVersion: "tls_version"
        case .tlsCertificate: "tls_certificate"
        case .tlsHandshakeTimeout: "tls_handshake_timeout"
        case .tlsMaxHandshakes: "tls_max_handshakes"
        case .tlsRecord: "tls_record"
        case .handedOver: "handed_over"
        }
    }
}

/// A snapshot of the engine's counters (totals since start).
public struct GatewayStats: Sendable, Equatable {
    public var connectionsOpen: Int = 0
    public var accepted: UInt64 = 0
    public var framesIn: UInt64 = 0
    public var framesOut: UInt64 = 0
    public var bytesIn: UInt64 = 0
    public var bytesOut: UInt64 = 0
    /// Links to upstream servers that are up (HELLO answered), and link closes.
    public var linksUp: UInt64 = 0
    public var linkCloses: UInt64 = 0
    /// Client frames sent up as DATA, and DATA frames delivered down to clients.
    public var forwardedUp: UInt64 = 0
    public var forwardedDown: UInt64 = 0
    /// Client frames answered by the gateway itself: no link up / a reserved command.
    public var noUpstreamReplies: UInt64 = 0
    public var reservedCommandReplies: UInt64 = 0
    /// Client frames answered `overloaded`: they waited longer than max_queue_wait for their link.
    public var overloadedReplies: UInt64 = 0
    /// Downward messages for an unknown or closed session, dropped.
    public var staleDrops: UInt64 = 0
    /// Link frames that broke the link protocol (the link was closed).
    public var linkMalformed: UInt64 = 0
    /// Aggregation role: links from lower nodes that are up, and HELLOs it refused.
    public var downlinksUp: UInt64 = 0
    public var linksRefused: UInt64 = 0
    /// Users and rooms: sessions bound to a uid, distinct uids, rooms, memberships (levels).
    public var sessionsBound: UInt64 = 0
    public var uids: UInt64 = 0
    public var rooms: UInt64 = 0
    public var memberships: UInt64 = 0
    /// PUSH messages applied, frames delivered by them, pushes that reached nobody here.
    public var pushes: UInt64 = 0
    public var pushDeliveries: UInt64 = 0
    public var pushNobody: UInt64 = 0
    /// Recipients past max_queued_bytes: skipped (`push_overflow: drop`) or closed (`close`);
    /// recipients skipped because they were closing; PUSH_DROPPED notices sent up.
    public var pushDropped: UInt64 = 0
    public var pushOverflowCloses: UInt64 = 0
    public var pushDroppedClosing: UInt64 = 0
    public var pushDropNotices: UInt64 = 0
    /// Clients closed because a reply or forwarded frame would pass max_queued_bytes.
    public var queueOverflowCloses: UInt64 = 0
    /// upstream_lost notices sent to clients whose link died.
    public var upstreamLostNotices: UInt64 = 0
    /// Client frames answered `too_large` (longer than the upstream takes), and downward
    /// messages dropped because the lower node does not take their frame.
    public var tooLargeReplies: UInt64 = 0
    public var tooLargeDrops: UInt64 = 0
    /// Tree-wide messages already passed on, or too old, arriving by another path: dropped.
    public var duplicates: UInt64 = 0
    /// JOINs beyond max_rooms_per_session.
    public var joinsRefused: UInt64 = 0
    /// Bytes held for incomplete frames across all connections (a level; capped by max_pending_bytes).
    public var pendingBytes: UInt64 = 0
    /// Bytes the rings, assemblies and read blocks hold (a level), and whether the gateway
    /// is shedding (not reading clients) because it passed max_buffered_bytes; how often it began to.
    public var bufferedBytes: UInt64 = 0
    public var shedding = false
    public var sheddingSpells: UInt64 = 0
    /// *Please reconnect* frames sent by a hot restart's drain.
    public var reconnectNotices: UInt64 = 0
    /// A hot restart's hand-over (docs/HANDOVER.md): connections sent to the new process (descriptor and
    /// state), of those the ones lost with it (it died or stalled before it confirmed them); and in the
    /// new process, connections adopted.
    public var handedOver: UInt64 = 0
    public var handoverLost: UInt64 = 0
    public var handoverAdopted: UInt64 = 0
    /// Forwarding sessions in a hand-over: moved out with their uid and rooms (the core answered MOVING);
    /// MOVING not answered in time (the client drained); their link lost mid-move (the client told
    /// upstream_lost, its session opened anew by the new process); in the new process, MOVED sent.
    public var sessionsMovedOut: UInt64 = 0
    public var movesUnanswered: UInt64 = 0
    public var movesLinkLost: UInt64 = 0
    public var sessionsMovedIn: UInt64 = 0
    /// TLS: handshakes completed, of which resumed from a ticket; handshakes in progress (a level).
    public var tlsHandshakes: UInt64 = 0
    public var tlsResumed: UInt64 = 0
    /// TLS 1.3 handshakes whose connection then left OpenSSL for the gateway's own record layer.
    public var tlsOwnRecords: UInt64 = 0
    public var tlsHandshaking: UInt64 = 0
    /// TLS: transport-lock acquisitions by Receive and Send, and how many found it held (contention).
    public var tlsLockTakes: UInt64 = 0
    public var tlsLockWaits: UInt64 = 0
    /// UDP listeners' sessions, datagrams and drops (docs/UDP.md).
    public var udp = UDPStats()
    /// Outbound links configured (servers x links each); those not up are connecting or waiting to retry.
    public var linksConfigured: UInt64 = 0
    /// Frames queued on every connection's receive rings (for Deal) and send rings (for Send),
    /// and connection ids waiting in each stage's inbox: levels, read off the table when asked.
    public var receiveRingFrames: UInt64 = 0
    public var sendRingFrames: UInt64 = 0
    /// Rings holding descriptor storage from the pool (an idle connection's rings hold none).
    public var ringsHeld: UInt64 = 0
    public var inboxDepths = [UInt64](repeating: 0, count: GatewayStats.stageNames.count)
    public static let stageNames = ["receive", "deal", "send", "monitor"]
    /// Closes per cause, indexed by `CloseCause.rawValue`.
    public var closes = [UInt64](repeating: 0, count: CloseCause.allCases.count)

    public init() {}

    public func closes(_ cause: CloseCause) -> UInt64 { closes[cause.rawValue] }
}
