/// The handler role: with no upstream servers, Deal hands each client frame to the application's
/// handler (`GatewayHandler`), which answers through its `Connection`. Deal-owned.
final class HandlerRole: ClientRole {
    let handler: GatewayHandler
    /// The handler asked for `tick` on every clock tick.
    let wantsTicks: Bool

    init(_ handler: GatewayHandler) {
        self.handler = handler
        wantsTicks = handler.wantsTicks
    }

    /// The handler hears of a connection on its first turn.
    func begin(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>, _ connection: Connection) -> Bool {
        if !s.pointee.deal.opened {
            s.pointee.deal.opened = true
            handler.opened(connection)
        }
        return true
    }

    @inline(__always)
    func received(_ frame: Frame, _ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>,
                  _ connection: Connection) -> Bool {
        handler.received(frame, on: connection)
        return true
    }

    /// A connection the handler heard open is gone.
    func closed(_ s: UnsafeMutablePointer<ConnectionSlot>, _ connection: Connection, cause: CloseCause) {
        if s.pointee.deal.opened { handler.closed(connection, cause: cause) }
    }

    func tick(_ milliseconds: UInt64) {
        if wantsTicks { handler.tick(milliseconds: milliseconds) }
    }
}
