/// A forwarding client's session as the core holds it, travelling with its connection in a hot
/// restart's hand-over (docs/HANDOVER.md, "Forwarding"): the new process keeps the session id (an
/// alias of its own slot), the uid and the rooms, and says MOVED rather than OPENED. Only a session
/// the core holds travels (OPENED sent, MOVING answered); any other client opens anew there.
public struct MovedSession: Sendable, Equatable {
    /// The id the core knows it by: the old process's node, slot and generation.
    public var id: SessionID
    /// The uid the core bound it to, if any.
    public var uid: UInt32?
    public var rooms: [UInt32]

    public init(id: SessionID, uid: UInt32?, rooms: [UInt32]) {
        self.id = id
        self.uid = uid
        self.rooms = rooms
    }

    /// Most rooms a record carries (max_rooms_per_session's top).
    static let maxRooms = Int(UInt16.max)

    /// 12 bytes of id, flags (bit 0 bound), uid, room count (UInt16), rooms (UInt32 each).
    func encode(into out: inout [UInt8]) {
        var id = [UInt8](repeating: 0, count: SessionID.size)
        id.withUnsafeMutableBytes { self.id.encode(into: $0.baseAddress!) }
        out += id
        out.append(uid == nil ? 0 : 1)
        Self.append(uid ?? 0, to: &out)
        let kept = rooms.prefix(Self.maxRooms)
        out += [UInt8(kept.count >> 8), UInt8(kept.count & 0xFF)]
        for room in kept { Self.append(room, to: &out) }
    }

    /// One record at `at`, advancing it; nil unless well formed (known flags, uid 0 unless bound, the rooms
    /// within the bytes).
    static func decode(_ bytes: [UInt8], at: inout Int) -> MovedSession? {
        guard bytes.count - at >= SessionID.size + 1 + 4 + 2 else { return nil }
        let id = bytes.withUnsafeBytes { SessionID(decoding: $0.baseAddress! + at) }
        let flags = bytes[at + 12]
        guard flags <= 1 else { return nil }
        let uid = load(bytes, at + 13)
        guard flags == 1 || uid == 0 else { return nil }  // an unbound session's uid is 0
        let count = Int(bytes[at + 17]) << 8 | Int(bytes[at + 18])
        at += 19
        guard bytes.count - at >= 4 * count else { return nil }
        let rooms = (0..<count).map { load(bytes, at + 4 * $0) }
        at += 4 * count
        return MovedSession(id: id, uid: flags == 1 ? uid : nil, rooms: rooms)
    }

    private static func append(_ v: UInt32, to out: inout [UInt8]) {
        out += [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)]
    }

    private static func load(_ b: [UInt8], _ i: Int) -> UInt32 {
        UInt32(b[i]) << 24 | UInt32(b[i + 1]) << 16 | UInt32(b[i + 2]) << 8 | UInt32(b[i + 3])
    }
}
