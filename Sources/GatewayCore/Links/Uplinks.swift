/// The outbound links to upstream servers, the part the access and aggregation roles share (one
/// entry per configured link position): which connection holds each, whether its HELLO was
/// answered, the link output not yet on its send ring, and the clients (or lower links) waiting
/// for room on it; their heartbeats and deadlines (Uplinks+Turn.swift) and output
/// (Uplinks+Output.swift). Owned by the Deal stage alone.
final class Uplinks {
    struct Link {
        var id: ConnectionID?
        var up = false
        /// Composed link output that later messages may extend (they are written
        /// back to back in Deal's reply block); queued at the end of the batch.
        var pending: FrameDescriptor?
        var lastHeard: UInt64 = 0
        var lastBeat: UInt64 = 0
        /// When the heartbeat not yet echoed was sent (monotonic ns; 0: none out).
        var beatSentAt: UInt64 = 0
        /// In `dirty`: Send is told about this link at the end of the batch.
        var dirty = false
        /// Clients (or, on an aggregation server, lower links) waiting for room, a
        /// list through their slots' waitPrev / waitNext.
        var waitHead = Uplinks.none
        var waitTail = Uplinks.none
        /// Clients announced (OPENED) on this link, a list through their slots' routePrev /
        /// routeNext: told upstream_lost if it dies.
        var routedHead = Uplinks.none
        /// The largest client frame the upper side takes (its HELLO).
        var peerMaxFrame = 0
        /// The upper side answers MOVE (its HELLO's features): sessions on this link can move at a hot restart.
        var peerMoves = false
    }

    static let none = UInt32.max
    var links: [Link]
    var upCount = 0
    private var cursor = 0
    /// Positions with output Send has not been told about: a pending descriptor, or forwarded ones.
    var dirty: [Int] = []
    /// HELLOs refused, by link position, logged once per change.
    var refusals = RefusalLog()
    /// Each position's server, for logs (nil once a reload removed it).
    var targets: [GatewayConfig.Upstream?]
    /// Set by Gateway.start before the threads run (it may depend on the bound port).
    var node: UInt32
    let heartbeatTicks: UInt64
    /// max_queue_wait in ticks; 0: no limit.
    var maxWaitTicks: UInt64
    /// The role this node names in its HELLO.
    let role: NodeRole
    unowned(unsafe) let deal: DealStage
    unowned(unsafe) let engine: Engine
    let table: ConnectionTable

    init(deal: DealStage, role: NodeRole, heartbeatTicks: UInt64) {
        self.deal = deal
        engine = deal.engine
        table = deal.table
        self.role = role
        maxWaitTicks = deal.live.maxWaitTicks
        let targets = deal.live.linkTargets
        self.targets = targets
        links = Array(repeating: Link(), count: targets.count)
        node = 0
        self.heartbeatTicks = max(1, heartbeatTicks)
        dirty.reserveCapacity(targets.count)
    }

    /// A reload's positions: new ones are appended (Monitor connects them only after this).
    func retarget(_ new: [GatewayConfig.Upstream?]) {
        targets = new
        while links.count < new.count {
            links.append(Link())
        }
        dirty.reserveCapacity(links.count)
    }

    func name(_ position: Int) -> String {
        "link \(position) to \(targets[position].map(\.description) ?? "a removed server")"
    }

    /// Send must hear about the link's output at the end of the batch.
    func markDirty(_ position: Int) {
        guard !links[position].dirty else { return }
        links[position].dirty = true
        dirty.append(position)
    }

    /// An access node's sessions can move at a hot restart while every link up answers MOVE: published
    /// for the exporter (docs/HANDOVER.md) whenever a link comes up or goes.
    func publishMoves() {
        guard role == .access else { return }
        engine.linksMove.store(upCount > 0 && links.allSatisfy { !$0.up || $0.peerMoves }, ordering: .releasing)
    }

    /// The next link that is up, round-robin, or nil when none is.
    func nextUp() -> Int? {
        guard upCount > 0 else { return nil }
        for _ in 0..<links.count {
            cursor = cursor + 1 == links.count ? 0 : cursor + 1
            if links[cursor].up { return cursor }
        }
        return nil
    }
}
