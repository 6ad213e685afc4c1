import Atomics

/// Totals for the stats line. Each counter has a single writing thread, so an
/// update is a relaxed load and store, never a locked read-modify-write.
final class Counters: @unchecked Sendable {  // every field is an atomic
    enum Name: Int, CaseIterable {
        case accepted, framesIn, framesOut, bytesIn, bytesOut
        // Deal's: links and forwarding.
        case linksUp, linkCloses, forwardedUp, forwardedDown, noUpstreamReplies, reservedCommandReplies
        case staleDrops, linkMalformed, overloadedReplies
        // Deal's: the aggregation role's links from lower nodes.
        case downlinksUp, linksRefused
        // Deal's: users, rooms and push.
        case sessionsBound, uids, rooms, memberships, pushes, pushDeliveries, pushNobody, pushDropped
        case pushOverflowCloses, duplicates, joinsRefused, pushDroppedClosing, pushDropNotices
        // Deal's: isolation (max_queued_bytes, links that die, frames too large for a tier).
        case queueOverflowCloses, upstreamLostNotices, tooLargeReplies, tooLargeDrops
        // Receive's: overload (max_buffered_bytes).
        case shedding, sheddingSpells
        // Deal's: a hot restart's drain.
        case reconnectNotices
        // A hot restart's hand-over (docs/HANDOVER.md): the control thread's (sent, lost), Monitor's (adopted).
        case handedOver, handoverLost, handoverAdopted
        // Deal's, forwarding sessions in a hand-over: moved out (the core answered MOVING), not answered in
        // time (drained), their link lost mid-move (opened anew); in the new process, MOVED sent.
        case sessionsMovedOut, movesUnanswered, movesLinkLost, sessionsMovedIn
        // TLS handshakes (the handshake threads' and Receive's, addShared); Receive's and Send's transport-lock use.
        case tlsHandshakes, tlsResumed, tlsReceiveLocks, tlsReceiveWaits
        case tlsSendLocks, tlsSendWaits, tlsOwnRecords
    }

    private let values: UnsafeMutablePointer<UInt64.AtomicRepresentation>
    private static let closeBase = Name.allCases.count
    private static let total = closeBase + CloseCause.allCases.count

    init() {
        values = .allocate(capacity: Counters.total)
        values.initialize(repeating: .init(0), count: Counters.total)
    }

    deinit { values.deallocate() }

    @inline(__always)
    private func atomic(_ i: Int) -> UnsafeAtomic<UInt64> { UnsafeAtomic(at: values + i) }

    /// Only from the counter's owning thread.
    @inline(__always)
    func add(_ name: Name, _ n: UInt64 = 1) {
        let a = atomic(name.rawValue)
        a.store(a.load(ordering: .relaxed) &+ n, ordering: .relaxed)
    }

    /// One counter's value, from any thread.
    func value(_ name: Name) -> UInt64 { atomic(name.rawValue).load(ordering: .relaxed) }

    /// A gauge, from its owning thread.
    func set(_ name: Name, _ value: UInt64) { atomic(name.rawValue).store(value, ordering: .relaxed) }

    /// A counter more than one thread adds to (TLS handshakes: the handshake threads and Receive's links).
    func addShared(_ name: Name) {
        atomic(name.rawValue).wrappingIncrement(ordering: .relaxed)
    }

    /// Closes are counted by Deal (at finalisation) and Monitor (over capacity): one atomic add.
    func addClose(_ cause: CloseCause) {
        atomic(Counters.closeBase + cause.rawValue).wrappingIncrement(ordering: .relaxed)
    }

    func snapshot(connectionsOpen: Int, pendingBytes: Int, bufferedBytes: Int) -> GatewayStats {
        var s = GatewayStats()
        s.bufferedBytes = UInt64(max(0, bufferedBytes))
        s.connectionsOpen = connectionsOpen
        s.pendingBytes = UInt64(max(0, pendingBytes))
        s.accepted = atomic(Name.accepted.rawValue).load(ordering: .relaxed)
        s.framesIn = atomic(Name.framesIn.rawValue).load(ordering: .relaxed)
        s.framesOut = atomic(Name.framesOut.rawValue).load(ordering: .relaxed)
        s.bytesIn = atomic(Name.bytesIn.rawValue).load(ordering: .relaxed)
        s.bytesOut = atomic(Name.bytesOut.rawValue).load(ordering: .relaxed)
        func load(_ n: Name) -> UInt64 { atomic(n.rawValue).load(ordering: .relaxed) }
        s.linksUp = load(.linksUp)
        s.linkCloses = load(.linkCloses)
        s.forwardedUp = load(.forwardedUp)
        s.forwardedDown = load(.forwardedDown)
        s.noUpstreamReplies = load(.noUpstreamReplies)
        s.reservedCommandReplies = load(.reservedCommandReplies)
        s.staleDrops = load(.staleDrops)
        s.overloadedReplies = load(.overloadedReplies)
        s.linkMalformed = load(.linkMalformed)
        s.downlinksUp = load(.downlinksUp)
        s.linksRefused = load(.linksRefused)
        s.sessionsBound = load(.sessionsBound)
        s.uids = load(.uids)
        s.rooms = load(.rooms)
        s.memberships = load(.memberships)
        s.pushes = load(.pushes)
        s.pushDeliveries = load(.pushDeliveries)
        s.pushNobody = load(.pushNobody)
        s.pushDropped = load(.pushDropped)
        s.pushOverflowCloses = load(.pushOverflowCloses)
        s.duplicates = load(.duplicates)
        s.joinsRefused = load(.joinsRefused)
        s.pushDroppedClosing = load(.pushDroppedClosing)
        s.pushDropNotices = load(.pushDropNotices)
        s.queueOverflowCloses = load(.queueOverflowCloses)
        s.upstreamLostNotices = load(.upstreamLostNotices)
        s.tooLargeReplies = load(.tooLargeReplies)
        s.tooLargeDrops = load(.tooLargeDrops)
        s.shedding = load(.shedding) != 0
        s.sheddingSpells = load(.sheddingSpells)
        s.reconnectNotices = load(.reconnectNotices)
        s.handedOver = load(.handedOver)
        s.handoverLost = load(.handoverLost)
        s.handoverAdopted = load(.handoverAdopted)
        s.sessionsMovedOut = load(.sessionsMovedOut)
        s.movesUnanswered = load(.movesUnanswered)
        s.movesLinkLost = load(.movesLinkLost)
        s.sessionsMovedIn = load(.sessionsMovedIn)
        s.tlsHandshakes = load(.tlsHandshakes)
        s.tlsResumed = load(.tlsResumed)
        s.tlsOwnRecords = load(.tlsOwnRecords)
        s.tlsLockTakes = load(.tlsReceiveLocks) &+ load(.tlsSendLocks)
        s.tlsLockWaits = load(.tlsReceiveWaits) &+ load(.tlsSendWaits)
        for c in CloseCause.allCases {
            s.closes[c.rawValue] = atomic(Counters.closeBase + c.rawValue).load(ordering: .relaxed)
        }
        return s
    }
}
