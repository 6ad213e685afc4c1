/// The access role's view of its client sessions as the core shapes them: who is
/// bound to which uid and in which rooms, which tree-wide messages were applied,
/// and who must be bound before auth_timeout. Deal-owned.
final class Sessions {
    let directory: SessionDirectory
    var filter = TreeWideFilter()
    var deadlines: AuthDeadlines?
    /// Client sessions open (presence of the node).
    var open = 0
    /// Sessions with pushes dropped since the core was last told, and when it last was:
    /// PUSH_DROPPED goes up at most once a second, one per session with the count.
    var dropNotices: [ConnectionID] = []
    var lastNoticeTick: UInt64 = 0
    /// Sessions adopted in a hot restart (AccessRole+Moves.swift): the id the core knows each by (the old
    /// process's) and the slot here, both ways.
    var aliasSlots: [SessionID: ConnectionID] = [:]
    var aliasIDs: [UInt32: SessionID] = [:]
    /// Adopted sessions whose MOVED waits for a link to come up.
    var owedMoves: [ConnectionID] = []

    init(table: ConnectionTable, config: GatewayConfig) {
        directory = SessionDirectory(table: table, maxRooms: config.maxRoomsPerSession)
        if config.authTimeout > 0 {
            let ticks = (UInt64(config.authTimeout) * 1000 + UInt64(config.tickMilliseconds) - 1)
                / UInt64(config.tickMilliseconds)
            deadlines = AuthDeadlines(capacity: config.maxConnections, ticks: ticks)
        }
    }
}
