import Atomics

/// The allow and deny lists, checked at accept before a slot is taken: a peer in a
/// deny network is refused; with an allow list, a peer in none of its networks is
/// refused. Each list is a set of masked addresses per prefix length, so a check
/// costs one hash lookup per distinct prefix length, not one per network.
/// Immutable: a reload builds new rules and swaps the engine's reference (Monitor and Receive read it).
final class AddressRules: AtomicReference, Sendable {
    private struct Networks {
        /// (family, prefix) -> the masked network addresses of that length.
        var byLength: [Int: Set<CIDR.Key>] = [:]
        var isEmpty: Bool { byLength.isEmpty }

        init(_ list: [CIDR]) {
            for c in list { byLength[Int(c.family) << 8 | c.prefix, default: []].insert(c.bits) }
        }

        func contains(_ peer: PeerAddress) -> Bool {
            let key = CIDR.key(peer.bytes)
            for (length, set) in byLength where UInt8(length >> 8) == peer.family {
                if set.contains(CIDR.masked(key, prefix: length & 0xFF)) { return true }
            }
            return false
        }
    }

    private let allow: Networks
    private let deny: Networks

    init(allow: [CIDR], deny: [CIDR]) {
        self.allow = Networks(allow)
        self.deny = Networks(deny)
    }

    var isEmpty: Bool { allow.isEmpty && deny.isEmpty }

    func admits(_ peer: PeerAddress) -> Bool {
        if !deny.isEmpty && deny.contains(peer) { return false }
        return allow.isEmpty || allow.contains(peer)
    }
}
