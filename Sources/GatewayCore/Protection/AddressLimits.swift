import Atomics

/// Per-address limits at accept, before a slot is taken (behind a lock in
/// `SharedAddressLimits`: Monitor admits and releases, Receive admits the
/// address a PROXY header names): live
/// connections per address (an IPv4 /32, an IPv6 /64), new connections per
/// second per address and for the whole listener (token buckets holding one
/// second's worth). One dictionary entry per address with connections or an
/// unfull bucket; idle entries are swept once a second.
struct AddressLimits {
    enum Refusal { case perAddress, addressRate, acceptRate }

    private struct Entry {
        var connections: Int
        var tokens: Double
        var refilledAt: UInt64
    }

    private(set) var maxPerAddress: Int
    private(set) var ratePerAddress: Double
    private(set) var acceptRate: Double
    private var entries: [CIDR.Key: Entry] = [:]
    private var acceptTokens: Double
    private var acceptRefilledAt: UInt64 = 0
    private var sweptAt: UInt64 = 0

    init(maxPerAddress: Int, ratePerAddress: Int, acceptRate: Int) {
        self.maxPerAddress = maxPerAddress
        self.ratePerAddress = Double(ratePerAddress)
        self.acceptRate = Double(acceptRate)
        acceptTokens = Double(acceptRate)
    }

    /// A reload's new limits; the counts of connections already open are kept.
    mutating func reconfigure(maxPerAddress: Int, ratePerAddress: Int, acceptRate: Int) {
        self.maxPerAddress = maxPerAddress
        self.ratePerAddress = Double(ratePerAddress)
        self.acceptRate = Double(acceptRate)
        acceptTokens = min(acceptTokens, self.acceptRate)
    }

    var isActive: Bool { maxPerAddress > 0 || ratePerAddress > 0 || acceptRate > 0 }
    /// Whether connections must be counted per address (then `closed` must be called for each admitted one).
    var countsConnections: Bool { maxPerAddress > 0 || ratePerAddress > 0 }

    /// The address an IPv4 peer is counted under (/32), or an IPv6 one (/64).
    static func key(_ peer: PeerAddress) -> CIDR.Key {
        CIDR.masked(CIDR.key(peer.bytes), prefix: peer.family == 4 ? 32 : 64)
    }

    /// Admits (and counts) a new connection from `peer` at `now` (nanoseconds), or says why not.
    mutating func admit(_ peer: PeerAddress, now: UInt64) -> Refusal? {
        if acceptRate > 0 {
            let seconds = Double(now &- acceptRefilledAt) / 1e9
            acceptTokens = TokenBucket.refilled(acceptTokens, rate: acceptRate, seconds: seconds)
            acceptRefilledAt = now
            guard acceptTokens >= 1 else { return .acceptRate }
        }
        if countsConnections {
            let key = Self.key(peer)
            var entry = entries[key] ?? Entry(connections: 0, tokens: ratePerAddress, refilledAt: now)
            if maxPerAddress > 0, entry.connections >= maxPerAddress { return .perAddress }
            if ratePerAddress > 0 {
                entry.tokens = TokenBucket.refilled(entry.tokens, rate: ratePerAddress,
                                                    seconds: Double(now &- entry.refilledAt) / 1e9)
                entry.refilledAt = now
                guard entry.tokens >= 1 else {
                    entries[key] = entry
                    return .addressRate
                }
                entry.tokens -= 1
            }
            entry.connections += 1
            entries[key] = entry
        }
        if acceptRate > 0 { acceptTokens -= 1 }
        return nil
    }

    /// A connection already open when a reload turned counting on: counted, never refused.
    mutating func count(_ peer: PeerAddress, now: UInt64) {
        let key = Self.key(peer)
        var entry = entries[key] ?? Entry(connections: 0, tokens: ratePerAddress, refilledAt: now)
        entry.connections += 1
        entries[key] = entry
    }

    /// An admitted connection from `peer` that was counted closed (even if a reload since stopped counting).
    mutating func closed(_ peer: PeerAddress) {
        let key = Self.key(peer)
        guard var entry = entries[key] else { return }
        entry.connections -= 1
        entries[key] = entry
    }

    /// Drops entries with no connection whose bucket is full again (at most once a second).
    mutating func sweep(now: UInt64) {
        guard now &- sweptAt >= 1_000_000_000 else { return }
        sweptAt = now
        let full = ratePerAddress
        entries = entries.filter { _, e in
            e.connections > 0
                || (full > 0 && TokenBucket.refilled(e.tokens, rate: full, seconds: Double(now &- e.refilledAt) / 1e9) < full)
        }
    }
}

/// The limits shared by Monitor (accept, detach) and Receive (after a PROXY header):
/// a spinlock around each call, off the frame path.
final class SharedAddressLimits: @unchecked Sendable {  // every access holds `lock`; the two flags are atomic
    private let lock = SpinLock()
    private var limits: AddressLimits
    private let active: ManagedAtomic<Bool>
    private let counting: ManagedAtomic<Bool>
    var isActive: Bool { active.load(ordering: .relaxed) }
    var countsConnections: Bool { counting.load(ordering: .relaxed) }

    init(_ limits: AddressLimits) {
        self.limits = limits
        active = ManagedAtomic(limits.isActive)
        counting = ManagedAtomic(limits.countsConnections)
    }

    /// A reload: new limits for the connections that come next. True when it turned counting on:
    /// then the connections already open must be counted (`count`), so the limit holds for them too.
    func reconfigure(maxPerAddress: Int, ratePerAddress: Int, acceptRate: Int) -> Bool {
        lock.lock()
        defer { lock.unlock() }
        let was = limits.countsConnections
        limits.reconfigure(maxPerAddress: maxPerAddress, ratePerAddress: ratePerAddress, acceptRate: acceptRate)
        active.store(limits.isActive, ordering: .relaxed)
        counting.store(limits.countsConnections, ordering: .relaxed)
        return !was && limits.countsConnections
    }

    func count(_ peer: PeerAddress, now: UInt64) {
        lock.lock()
        limits.count(peer, now: now)
        lock.unlock()
    }

    /// Why a new connection from `peer` is refused, or nil (then it is counted).
    func refusal(of peer: PeerAddress, now: UInt64) -> CloseCause? {
        lock.lock()
        defer { lock.unlock() }
        switch limits.admit(peer, now: now) {
        case nil: return nil
        case .perAddress: return .perAddress
        case .addressRate: return .addressRate
        case .acceptRate: return .acceptRate
        }
    }

    func closed(_ peer: PeerAddress) {
        lock.lock()
        limits.closed(peer)
        lock.unlock()
    }

    func sweep(now: UInt64) {
        lock.lock()
        limits.sweep(now: now)
        lock.unlock()
    }
}
