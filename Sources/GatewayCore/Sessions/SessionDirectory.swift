/// Who each client session is, as the core decided (docs/LINK.md, users and rooms):
/// the uid a session is bound to, with every uid's sessions in a list through
/// their slots, and room memberships, each a node in a pool linked both into its
/// room's list and its session's. Pushes walk these lists and allocate nothing;
/// binds and joins may grow the tables. Deal-owned. A list's links are slot or membership indices.
final class SessionDirectory {
    /// The end of a list.
    static let none = UInt32.max

    struct Head {
        var first: UInt32
        var count: Int
    }

    private struct Membership {
        var room: UInt32
        var slot: UInt32
        var prevInRoom: UInt32
        var nextInRoom: UInt32
        var nextOfSlot: UInt32
    }

    enum JoinResult { case joined, already, full }

    private let table: ConnectionTable
    var maxRooms: Int
    private var uids: [UInt32: Head] = [:]
    private var rooms: [UInt32: Head] = [:]
    private var members: [Membership] = []
    private var freeMembers = SessionDirectory.none
    /// Sessions bound to a uid, and memberships, for the stats.
    private(set) var boundCount = 0
    private(set) var membershipCount = 0
    var uidCount: Int { uids.count }
    var roomCount: Int { rooms.count }

    init(table: ConnectionTable, maxRooms: Int) {
        self.table = table
        self.maxRooms = maxRooms
    }

    func count(uid: UInt32) -> Int { uids[uid]?.count ?? 0 }
    func count(room: UInt32) -> Int { rooms[room]?.count ?? 0 }

    // MARK: uids

    /// Binds slot `index` to `uid` (rebinding it if it was bound to another).
    func bind(_ index: UInt32, uid: UInt32) {
        let s = table.slot(index)
        if s.pointee.deal.bound {
            if s.pointee.deal.uid == uid { return }
            unbind(index)
        }
        let head = uids[uid]
        s.pointee.deal.bound = true
        s.pointee.deal.uid = uid
        s.pointee.deal.uidPrev = Self.none
        s.pointee.deal.uidNext = head?.first ?? Self.none
        if let first = head?.first { table.slot(first).pointee.deal.uidPrev = index }
        uids[uid] = Head(first: index, count: (head?.count ?? 0) + 1)
        boundCount += 1
    }

    func unbind(_ index: UInt32) {
        let s = table.slot(index)
        guard s.pointee.deal.bound else { return }
        s.pointee.deal.bound = false
        let uid = s.pointee.deal.uid
        let (prev, next) = (s.pointee.deal.uidPrev, s.pointee.deal.uidNext)
        if next != Self.none { table.slot(next).pointee.deal.uidPrev = prev }
        if prev != Self.none { table.slot(prev).pointee.deal.uidNext = next }
        if var head = uids[uid] {
            if prev == Self.none { head.first = next }
            head.count -= 1
            uids[uid] = head.count == 0 ? nil : head
        }
        boundCount -= 1
    }

    /// Calls `body` with the slot index of every session bound to `uid`.
    func forEach(uid: UInt32, _ body: (UInt32) -> Void) {
        var index = uids[uid]?.first ?? Self.none
        while index != Self.none {
            let next = table.slot(index).pointee.deal.uidNext
            body(index)
            index = next
        }
    }

    // MARK: rooms

    func join(_ index: UInt32, room: UInt32) -> JoinResult {
        let s = table.slot(index)
        var m = s.pointee.deal.roomsHead
        while m != Self.none {
            if members[Int(m)].room == room { return .already }
            m = members[Int(m)].nextOfSlot
        }
        guard Int(s.pointee.deal.roomCount) < maxRooms else { return .full }
        let head = rooms[room]
        let node = Membership(room: room, slot: index, prevInRoom: Self.none, nextInRoom: head?.first ?? Self.none,
                              nextOfSlot: s.pointee.deal.roomsHead)
        let at: UInt32
        if freeMembers != Self.none {
            at = freeMembers
            freeMembers = members[Int(at)].nextOfSlot
            members[Int(at)] = node
        } else {
            at = UInt32(members.count)
            members.append(node)
        }
        if let first = head?.first { members[Int(first)].prevInRoom = at }
        rooms[room] = Head(first: at, count: (head?.count ?? 0) + 1)
        s.pointee.deal.roomsHead = at
        s.pointee.deal.roomCount = s.pointee.deal.roomCount + 1  // not +=: an inout access spans the whole record
        membershipCount += 1
        return .joined
    }

    /// False when the session was not in the room.
    @discardableResult
    func leave(_ index: UInt32, room: UInt32) -> Bool {
        let s = table.slot(index)
        var previous = Self.none
        var m = s.pointee.deal.roomsHead
        while m != Self.none, members[Int(m)].room != room {
            previous = m
            m = members[Int(m)].nextOfSlot
        }
        guard m != Self.none else { return false }
        let next = members[Int(m)].nextOfSlot
        if previous == Self.none { s.pointee.deal.roomsHead = next } else { members[Int(previous)].nextOfSlot = next }
        s.pointee.deal.roomCount = s.pointee.deal.roomCount - 1
        unlinkFromRoom(m)
        return true
    }

    /// A session closed: it leaves every room and its uid.
    func remove(_ index: UInt32) {
        unbind(index)
        let s = table.slot(index)
        var m = s.pointee.deal.roomsHead
        while m != Self.none {
            let next = members[Int(m)].nextOfSlot
            unlinkFromRoom(m)
            m = next
        }
        s.pointee.deal.roomsHead = Self.none
        s.pointee.deal.roomCount = 0
    }

    /// The rooms slot `index` is in.
    func rooms(of index: UInt32) -> [UInt32] {
        var rooms: [UInt32] = []
        var m = table.slot(index).pointee.deal.roomsHead
        while m != Self.none {
            rooms.append(members[Int(m)].room)
            m = members[Int(m)].nextOfSlot
        }
        return rooms
    }

    /// Calls `body` with the slot index of every session in `room`.
    func forEach(room: UInt32, _ body: (UInt32) -> Void) {
        var m = rooms[room]?.first ?? Self.none
        while m != Self.none {
            let node = members[Int(m)]
            body(node.slot)
            m = node.nextInRoom
        }
    }

    /// Takes membership `m` out of its room's list and returns it to the free list.
    private func unlinkFromRoom(_ m: UInt32) {
        let node = members[Int(m)]
        if node.nextInRoom != Self.none { members[Int(node.nextInRoom)].prevInRoom = node.prevInRoom }
        if node.prevInRoom != Self.none { members[Int(node.prevInRoom)].nextInRoom = node.nextInRoom }
        if var head = rooms[node.room] {
            if node.prevInRoom == Self.none { head.first = node.nextInRoom }
            head.count -= 1
            rooms[node.room] = head.count == 0 ? nil : head
        }
        members[Int(m)].nextOfSlot = freeMembers
        freeMembers = m
        membershipCount -= 1
    }
}
