/// Deal's view of the links lower nodes opened to this aggregation server
/// (docs/LINK.md, routing): each link's HELLO, the upper link its traffic goes
/// up on, and, per lower node, its links that are up, for routing downward.
/// Owned by the Deal stage alone; changed on link events, read per frame.
final class Downlinks {
    struct Link {
        let id: ConnectionID
        var up = false
        /// Its HELLO was refused: it closes once the answer is sent; what follows is ignored.
        var refused = false
        /// From the lower side's HELLO.
        var node: UInt32 = 0
        var number: UInt16 = 0
        var role: UInt8 = 0
        var heartbeatTicks: UInt64
        var lastHeard: UInt64
        /// The largest client frame the lower node takes (its HELLO): longer ones are not sent to it.
        var maxFrame = 0
        /// The upper link (its position in `Uplinks`) everything from this link goes up on.
        var upper = 0
        var upperID = ConnectionID(index: .max, generation: .max)
    }

    /// A node's link that is up, as downward routing needs it.
    struct Route {
        let index: UInt32
        let id: ConnectionID
        let number: UInt16
        let upper: Int
    }

    /// By slot index.
    var links: [UInt32: Link] = [:]
    /// The links that are up, by lower node id.
    var routes: [UInt32: [Route]] = [:]
    var upCount = 0
    /// Lower links up, by the upper link position carrying them (kept as routes come and go).
    private var carried: [Int: Int] = [:]
    /// HELLOs refused, by lower node, logged once per change.
    var refusals = RefusalLog()

    /// Frames for one lower link that follow one another in memory, not yet on
    /// its send ring: a run of downward messages leaves as one descriptor.
    var run: FrameDescriptor?
    var runTarget = ConnectionID(index: .max, generation: .max)

    /// Tree-wide messages (docs/LINK.md) passed on here once each.
    var filter = TreeWideFilter()

    /// The lower link a session message for `node` goes on, having come down upper
    /// link `upper`: the node's lowest-numbered link fed by that upper link (the core
    /// answers on the link the session used), else its lowest-numbered link. One
    /// choice for every message from one upper link, so their order holds.
    func route(node: UInt32, upper: Int) -> Route? {
        guard let candidates = routes[node] else { return nil }
        var best: Route?
        for r in candidates where r.upper == upper && r.number < (best?.number ?? .max) { best = r }
        return best ?? lowest(candidates)
    }

    /// The node's lowest-numbered link: where tree-wide messages go.
    func lowest(_ candidates: [Route]) -> Route? {
        var best: Route?
        for r in candidates {
            if let b = best, b.number <= r.number { continue }
            best = r
        }
        return best
    }

    /// The upper link for a new lower link of `node`: among the upper links that
    /// are up, the one carrying fewest of this node's links, then fewest links at
    /// all; so a node's links usually map one to one onto upper links and replies
    /// come back down the link the request went up.
    func chooseUpper(node: UInt32, among uplinks: Uplinks) -> Int? {
        var best: (position: Int, mine: Int, all: Int)?
        for position in uplinks.links.indices where uplinks.links[position].up {
            let mine = routes[node]?.reduce(0) { $0 + ($1.upper == position ? 1 : 0) } ?? 0
            let all = carried[position] ?? 0
            if let b = best, (b.mine, b.all) <= (mine, all) { continue }
            best = (position, mine, all)
        }
        return best?.position
    }

    func addRoute(_ link: Link) {
        routes[link.node, default: []].append(Route(index: link.id.index, id: link.id, number: link.number,
                                                    upper: link.upper))
        carried[link.upper, default: 0] += 1
        upCount += 1
    }

    func removeRoute(_ link: Link) {
        routes[link.node]?.removeAll { $0.id == link.id }
        carried[link.upper, default: 1] -= 1
        if routes[link.node]?.isEmpty == true { routes[link.node] = nil }
        upCount -= 1
    }
}
