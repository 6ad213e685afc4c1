import GatewayCore
import LinkCore

/// Whom `bin_test core` pushes to: uids or rooms 1...--push-uids in turn, or every session.
public enum PushScope: String, CaseIterable, Sendable {
    case uid, room, all

    var linkScope: LinkMessage.Scope {
        switch self {
        case .uid: .uid
        case .room: .room
        case .all: .all
        }
    }
}

/// The frames of a push run, shared by the core that sends them and the client that checks them.
///   LOGIN (client to core): cmd 10, body = uid (u32 BE), optionally a room (u32 BE) after it.
///   push (core to clients): cmd 99, seq = push number, uid field = target, body =
///     [send time, CLOCK_MONOTONIC ns, u64 BE][target u32 BE][scope u8][pad]
///   where pad byte i of the body is UInt8(truncatingIfNeeded: seq &* 31 &+ i), as in `FramePattern`.
enum PushFrame {
    static let loginCmd: UInt16 = 10
    static let cmd: UInt16 = 99
    static let targetOffset = 8
    static let scopeOffset = 12
    static let padOffset = 13
    /// A client's login frame: uid and room.
    static let loginLength = FrameHeader.size + 8
    static let defaultSize = 64
    /// Body bytes: room for the stamp, target and scope; the frame fits the default max_frame.
    static let sizeRange = 24...((1 << 20) - FrameHeader.size)

    /// The target of push number `seq`: 1...count in turn (uid and room scopes), 0 for all.
    static func target(seq: UInt64, scope: PushScope, count: Int) -> UInt32 {
        scope == .all ? 0 : UInt32((seq - 1) % UInt64(count) + 1)
    }

    static func loadU32(_ p: UnsafeRawPointer, _ offset: Int) -> UInt32 {
        UInt32(bigEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }
}

/// What `bin_test core` pushes, checked by `CoreSettings.init(_:)`.
public struct PushSettings: Sendable, Equatable {
    /// Pushes per second; 0: none.
    public var rate = 0
    public var scope = PushScope.uid
    /// Targets cycle over uids (or rooms) 1...uids.
    public var uids = 1
    /// Body bytes of each pushed frame.
    public var size = PushFrame.defaultSize
    /// Seconds from the core's start to the first push, so that clients can log in first.
    public var after = 0.0
    /// Logins (LOGIN frames bound) the core waits for before `after` starts counting: clients
    /// logged in by construction, whatever the machine's load.
    public var afterLogins = 0
    /// Pushes in all, then none; 0: no limit.
    public var count = 0

    public init() {}
}

/// A fixed push schedule from a start time, run from the core's clock ticks: push n (from 1)
/// is due at start + (n - 1) / rate. A tick sends every push due by then, so a late tick
/// catches up, and never one that is not yet due. The start is `after` seconds from the core's
/// start, or from the tick that sees `afterLogins` logins.
final class PushSchedule {
    private let settings: PushSettings
    private(set) var start: UInt64?
    private let period: Double
    private let limit: UInt64
    private(set) var sent: UInt64 = 0
    private let body: UnsafeMutableRawPointer
    private let pattern: FramePattern

    init(_ settings: PushSettings, now: UInt64) {
        precondition(settings.rate > 0 && PushFrame.sizeRange.contains(settings.size))
        self.settings = settings
        if settings.afterLogins == 0 { start = now + MonotonicTime.nanoseconds(settings.after) }
        period = 1e9 / Double(settings.rate)
        limit = settings.count > 0 ? UInt64(settings.count) : .max
        body = .allocate(byteCount: settings.size, alignment: 8)
        pattern = FramePattern(bodySize: settings.size)
    }

    deinit {
        body.deallocate()
        pattern.deallocate()
    }

    /// Sends the pushes due by `now`, `logins` having been bound so far; returns how many.
    func run(now: UInt64, logins: Int, server: CoreServer) -> Int {
        if start == nil && logins >= settings.afterLogins { start = now + MonotonicTime.nanoseconds(settings.after) }
        guard let start, now >= start else { return 0 }
        let due = min(UInt64(Double(now - start) / period) + 1, limit)
        let first = sent
        // A link without room holds the rest until a later tick (the client sees them late, not lost).
        while sent < due, push(sent + 1, server: server) { sent += 1 }
        return Int(sent - first)
    }

    private func push(_ n: UInt64, server: CoreServer) -> Bool {
        let seq = UInt32(truncatingIfNeeded: n)
        let target = PushFrame.target(seq: n, scope: settings.scope, count: settings.uids)
        let pad = settings.size - PushFrame.padOffset
        (body + PushFrame.padOffset).copyMemory(from: pattern.body(seq: seq) + PushFrame.padOffset, byteCount: pad)
        body.storeBytes(of: target.bigEndian, toByteOffset: PushFrame.targetOffset, as: UInt32.self)
        body.storeBytes(of: settings.scope.linkScope.rawValue, toByteOffset: PushFrame.scopeOffset, as: UInt8.self)
        // Stamped last, as close to the send as the composing allows.
        body.storeBytes(of: MonotonicTime.now().bigEndian, toByteOffset: 0, as: UInt64.self)
        return server.push(settings.scope.linkScope, target: target,
                           FrameHeader(length: 0, seq: seq, cmd: PushFrame.cmd, uid: target),
                           body: UnsafeRawBufferPointer(start: body, count: settings.size))
    }
}
