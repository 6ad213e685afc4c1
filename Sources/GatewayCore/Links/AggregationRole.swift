/// The aggregation role (docs/LINK.md, routing): lower nodes' links come in (Downlinks), what they
/// send goes up the upstream links unchanged (AggregationRole+Upward.swift), what comes down is
/// routed by the session's node to one of that node's lower links (AggregationRole+Downward.swift),
/// neither way with a copy. Deal-owned.
final class AggregationRole {
    unowned(unsafe) let deal: DealStage
    unowned(unsafe) let engine: Engine
    let table: ConnectionTable
    /// The links to the upstream servers.
    let links: Uplinks
    /// The links lower nodes opened to this server.
    let downlinks = Downlinks()

    init(deal: DealStage, links: Uplinks) {
        self.deal = deal
        engine = deal.engine
        table = deal.table
        self.links = links
    }

    /// An upper link's turn: what comes down is routed to lower links, a run to one link at a time.
    func dealUplink(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) {
        links.turn(id, s, downward: { message, d, link, position in routeDownward(message, d, link, position) },
                   walked: { flushDownRun() })
    }

    /// An upper link is gone: the lower links it carried are closed with it.
    func linkClosed(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>, cause: CloseCause) {
        links.closed(id, s, cause: cause) { _ in closeDownlinks(of: id) }
    }

    func tick(_ tick: UInt64) {
        links.tick(tick)
        tickDownlinks(tick)
    }
}
