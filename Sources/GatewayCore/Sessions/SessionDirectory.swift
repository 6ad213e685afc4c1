/// Who each client session is, as the core decided (docs/LINK.md, users and rooms):
/// the uid a session is bound to, with every uid's sessions in a list through
/// their slots, and room memberships, each a node in a pool linked both into its
/// room's list and its session's. Pushes walk these lists and allocate nothing;
/// binds and joins may grow the tables. Deal-owned. List links are index + 1, 0 = none.
final class SessionDirectory {
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
    private var freeMembers: UInt32 = 0
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
        if s.pointee.bound {
            if s.pointee.uid == uid { return }
            unbind(index)
        }
        let head = uids[uid]
        s.pointee.bound = true
        s.pointee.uid = uid
        s.pointee.uidPrev = 0
        s.pointee.uidNext = head?.first ?? 0
        if let first = head?.first { table.slot(first - 1).pointee.uidPrev = index + 1 }
        uids[uid] = Head(first: index + 1, count: (head?.count ?? 0) + 1)
        boundCount += 1
    }

    func unbind(_ index: UInt32) {
        let s = table.slot(index)
        guard s.pointee.bound else { return }
        s.pointee.bound = false
        let uid = s.pointee.uid
        let (prev, next) = (s.pointee.uidPrev, s.pointee.uidNext)
        if next != 0 { table.slot(next - 1).pointee.uidPrev = prev }
        if prev != 0 { table.slot(prev - 1).pointee.uidNext = next }
        if var head = uids[uid] {
            if prev == 0 { head.first = next }
            head.count -= 1
            uids[uid] = head.count == 0 ? nil : head
        }
        boundCount -= 1
    }

    /// Calls `body` with the slot index of every session bound to `uid`.
    func forEach(uid: UInt32, _ body: (UInt32) -> Void) {
        var link = uids[uid]?.first ?? 0
        while link != 0 {
            let next = table.slot(link - 1).pointee.uidNext
            body(link - 1)
            link = next
        }
    }

    // MARK: rooms

    func join(_ index: UInt32, room: UInt32) -> JoinResult {
        let s = table.slot(index)
        var m = s.pointee.roomsHead
        while m != 0 {
            if members[Int(m - 1)].room == room { return .already }
            m = members[Int(m - 1)].nextOfSlot
        }
        guard Int(s.pointee.roomCount) < maxRooms else { return .full }
        let head = rooms[room]
        let node = Membership(room: room, slot: index, prevInRoom: 0, nextInRoom: head?.first ?? 0,
                              nextOfSlot: s.pointee.roomsHead)
        let at: UInt32
        if freeMembers != 0 {
            at = freeMembers
            freeMembers = members[Int(at - 1)].nextOfSlot
            members[Int(at - 1)] = node
        } else {
            members.append(node)
            at = UInt32(members.count)
        }
        if let first = head?.first { members[Int(first - 1)].prevInRoom = at }
        rooms[room] = Head(first: at, count: (head?.count ?? 0) + 1)
        s.pointee.roomsHead = at
        s.pointee.roomCount = s.pointee.roomCount + 1  // not +=: an inout access spans the whole record
        membershipCount += 1
        return .joined
    }

    /// False when the session was not in the room.
    @discardableResult
    func leave(_ index: UInt32, room: UInt32) -> Bool {
        let s = table.slot(index)
        var previous: UInt32 = 0
        var m = s.pointee.roomsHead
        while m != 0, members[Int(m - 1)].room != room {
            previous = m
            m = members[Int(m - 1)].nextOfSlot
        }
        guard m != 0 else { return false }
        let next = members[Int(m - 1)].nextOfSlot
        if previous == 0 { s.pointee.roomsHead = next } else { members[Int(previous - 1)].nextOfSlot = next }
        s.pointee.roomCount = s.pointee.roomCount - 1
        unlinkFromRoom(m)
        return true
    }

    /// A session closed: it leaves every room and its uid.
    func remove(_ index: UInt32) {
        unbind(index)
        let s = table.slot(index)
        var m = s.pointee.roomsHead
        while m != 0 {
            let next = members[Int(m - 1)].nextOfSlot
            unlinkFromRoom(m)
            m = next
        }
        s.pointee.roomsHead = 0
        s.pointee.roomCount = 0
    }

    /// Calls `body` with the slot index of every session in `room`.
    func forEach(room: UInt32, _ body: (UInt32) -> Void) {
        var m = rooms[room]?.first ?? 0
        while m != 0 {
            let node = members[Int(m - 1)]
            body(node.slot)
            m = node.nextInRoom
        }
    }

    /// Takes membership `m` out of its room's list and returns it to the free list.
    private func unlinkFromRoom(_ m: UInt32) {
        let node = members[Int(m - 1)]
        if node.nextInRoom != 0 { members[Int(node.nextInRoom - 1)].prevInRoom = node.prevInRoom }
        if node.prevInRoom != 0 { members[Int(node.prevInRoom - 1)].nextInRoom = node.nextInRoom }
        if var head = rooms[node.room] {
            if node.prevInRoom == 0 { head.first = node.nextInRoom }
            head.count -= 1
            rooms[node.room] = head.count == 0 ? nil : head
        }
        members[Int(m - 1)].nextOfSlot = freeMembers
        freeMembers = m
        membershipCount -= 1
    }
}
