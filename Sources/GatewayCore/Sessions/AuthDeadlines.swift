/// auth_timeout: the sessions still to be bound, in the order they opened. Every
/// session gets the same timeout, so their deadlines are in order too: a ring of
/// one entry per connection slot, filled at open and emptied from the front as
/// the deadlines pass. Deal-owned; allocates once.
struct AuthDeadlines {
    private var ids: [ConnectionID]
    private var deadlines: [UInt64]
    private var head = 0
    private var count = 0
    let ticks: UInt64

    init(capacity: Int, ticks: UInt64) {
        ids = Array(repeating: ConnectionID(index: 0, generation: 0), count: capacity)
        deadlines = Array(repeating: 0, count: capacity)
        self.ticks = ticks
    }

    /// A session opened at `now`. Entries of sessions that closed or were bound stay until
    /// their deadline; when they fill the ring, the ones `isPending` rejects are dropped
    /// (at most one entry per slot is pending, so that always makes room).
    mutating func add(_ id: ConnectionID, now: UInt64, isPending: (ConnectionID) -> Bool) {
        if count == ids.count { compact(isPending) }
        let at = (head + count) % ids.count
        ids[at] = id
        deadlines[at] = now &+ ticks
        count += 1
    }

    /// Calls `expired` for every session whose deadline is at or before `now`, oldest first.
    mutating func expire(now: UInt64, _ expired: (ConnectionID) -> Void) {
        while count > 0, deadlines[head] <= now {
            let id = ids[head]
            head = (head + 1) % ids.count
            count -= 1
            expired(id)
        }
    }

    private mutating func compact(_ isPending: (ConnectionID) -> Bool) {
        var kept = 0
        for i in 0..<count {
            let from = (head + i) % ids.count
            guard isPending(ids[from]) else { continue }
            let to = (head + kept) % ids.count
            (ids[to], deadlines[to]) = (ids[from], deadlines[from])
            kept += 1
        }
        count = kept
        precondition(count < ids.count, "more sessions waiting to be bound than connection slots")
    }
}
