/// The clients announced (OPENED) on each link, a list through their slots' routePrev / routeNext
/// from the link's `routedHead`: told upstream_lost if it dies.
extension AccessRole {
    func joinRouteList(_ index: UInt32, _ s: UnsafeMutablePointer<ConnectionSlot>, _ position: Int) {
        let head = links.links[position].routedHead
        s.pointee.deal.routePrev = Uplinks.none
        s.pointee.deal.routeNext = head
        s.pointee.deal.routeFrames = 0
        if head != Uplinks.none { table.slot(head).pointee.deal.routePrev = index }
        links.links[position].routedHead = index
    }

    /// Takes `s` off the list of the link it was announced on, while that link is the same connection
    /// (a link that died took its list with it).
    func leaveRouteList(_ s: UnsafeMutablePointer<ConnectionSlot>) {
        guard s.pointee.deal.routed, let position = routedPosition(s) else { return }
        let (prev, next) = (s.pointee.deal.routePrev, s.pointee.deal.routeNext)
        if prev == Uplinks.none {
            links.links[position].routedHead = next
        } else {
            table.slot(prev).pointee.deal.routeNext = next
        }
        if next != Uplinks.none { table.slot(next).pointee.deal.routePrev = prev }
    }

    /// A link died: every client that sent frames on it is told once, with the seq of the last one
    /// (docs/PROTOCOL.md, upstream_lost), since the core may never have answered them.
    func tellUpstreamLost(_ position: Int) {
        var index = links.links[position].routedHead
        var told: UInt64 = 0
        while index != Uplinks.none {
            let s = table.slot(index)
            let next = s.pointee.deal.routeNext
            let id = ConnectionID(index: index, generation: s.generation.load(ordering: .acquiring))
            // One passed on in a hand-over had every answer before the core let it go.
            if s.pointee.deal.routeFrames > 0, s.state == .open, !s.endings.isFlushing, !s.passedOnForHandover {
                let header = FrameHeader(length: 0, seq: s.pointee.deal.lastUpSeq, cmd: ReservedCommand.upstreamLost,
                                         status: GatewayStatus.upstreamLost, uid: 0)
                deal.compose(header, body: UnsafeRawBufferPointer(start: nil, count: 0), to: id)
                s.pointee.deal.routeFrames = 0
                told += 1
            }
            if s.pointee.deal.moveState != 0 { linkLostMidMove(id, s) }
            index = next
        }
        links.links[position].routedHead = Uplinks.none
        engine.counters.add(.upstreamLostNotices, told)
    }
}
