import Logging

/// What comes down to an aggregation server (docs/LINK.md, routing): a session's messages go to
/// one of its node's lower links, tree-wide ones to one link of every lower node, without a copy.
extension AggregationRole {
    // MARK: downward

    /// A message that came down upper link `position`: session messages go to their
    /// node's link, tree-wide ones to one link of every node (of the one node for scope node).
    func routeDownward(_ message: LinkMessage, _ d: FrameDescriptor, _ link: ConnectionID,
                       _ position: Int) -> Uplinks.Step {
        switch message {
        case .data(let session, let inner):
            routeDown(d, session, isData: true, inner: Int(inner), from: position)
        case .closed(let session, _), .bind(let session, _), .unbind(let session), .join(let session, _),
             .leave(let session, _):
            routeDown(d, session, isData: false, inner: 0, from: position)
        case .push(let tree, let inner):
            fanOut(d, tree, inner: Int(inner))
        case .kick(let tree), .presenceQuery(let tree):
            fanOut(d, tree, inner: 0)
        default:
            return links.malformed(link, position, "\(message) sent downward")
        }
        return .next
    }

    /// A tree-wide message, the first time it comes (by any path): a copy of the same
    /// bytes on one link of every lower node, each on its own output (a slow one delays no other).
    private func fanOut(_ d: FrameDescriptor, _ tree: LinkMessage.TreeWide, inner: Int) {
        guard downlinks.filter.isNew(origin: tree.origin, seq: tree.seq) else {
            engine.counters.add(.duplicates)
            return
        }
        flushDownRun()
        for (node, routes) in downlinks.routes where tree.scope != .node || node == tree.target {
            guard let r = downlinks.lowest(routes) else { continue }
            guard takesFrame(inner, r) else { continue }
            d.chunk.retain()
            links.push(d, on: r.id)
            engine.send.input.post(table.slot(r.index), r.id)
        }
        downlinks.filter.mark(origin: tree.origin, seq: tree.seq)
    }

    /// Routes one DATA or CLOSED that came down upper link `position` to a lower link of the
    /// session's node, extending the run of frames for that link when it follows in
    /// memory. No link for the node: a stale drop.
    func routeDown(_ d: FrameDescriptor, _ session: SessionID, isData: Bool, inner: Int, from position: Int) {
        guard let route = downlinks.route(node: session.node, upper: position) else {
            engine.counters.add(.staleDrops)
            return
        }
        guard takesFrame(inner, route) else { return }
        if var run = downlinks.run, downlinks.runTarget == route.id, run.chunk == d.chunk,
           run.offset + run.length == d.offset {
            run.length += d.length
            downlinks.run = run
            if isData { engine.counters.add(.forwardedDown) }
            return
        }
        flushDownRun()
        d.chunk.retain()
        downlinks.run = d
        downlinks.runTarget = route.id
        if isData { engine.counters.add(.forwardedDown) }
    }

    /// Whether the lower node takes a client frame of `inner` bytes (its max_frame, from its HELLO);
    /// a longer one is dropped here and counted, rather than closing a link that carries others.
    private func takesFrame(_ inner: Int, _ route: Downlinks.Route) -> Bool {
        guard let link = downlinks.links[route.index], inner > link.maxFrame else { return true }
        engine.counters.add(.tooLargeDrops)
        return false
    }

    /// The run of downward frames goes on its lower link's output.
    func flushDownRun() {
        guard let run = downlinks.run else { return }
        downlinks.run = nil
        let target = downlinks.runTarget
        links.push(run, on: target)
        engine.send.postOrRun(table.slot(target.index), target, allowance: &deal.inlineAllowance)
    }
}
