import Atomics

/// UDP listeners' figures (docs/UDP.md): sessions, datagrams both ways, and every datagram dropped,
/// by cause. Part of `GatewayStats`; all zero without a udp:// listener.
public struct UDPStats: Sendable, Equatable {
    /// Sessions open now, and opened since start (closes are counted with the other connections'
    /// causes: `idle` for the idle timeout).
    public var sessionsOpen: UInt64 = 0
    public var sessionsOpened: UInt64 = 0
    /// Sessions that proved their address by echoing their token.
    public var sessionsProven: UInt64 = 0
    public var datagramsIn: UInt64 = 0
    public var datagramsOut: UInt64 = 0
    /// recvmmsg and sendmmsg calls, to see what batching gives.
    public var receiveCalls: UInt64 = 0
    public var sendCalls: UInt64 = 0
    /// Dropped on the way in: shorter than a header, a bad frame length, a frame running past the end,
    /// a wrong token, a full session queue (its client sends faster than it is served), a session
    /// closing, refused (lists, per-address limits, no slot: counted by close cause too), truncated.
    public var runts: UInt64 = 0
    public var badLengths: UInt64 = 0
    public var partialFrames: UInt64 = 0
    public var badTokens: UInt64 = 0
    public var queueFull: UInt64 = 0
    public var closingDrops: UInt64 = 0
    public var refused: UInt64 = 0
    public var truncated: UInt64 = 0
    public var receiveErrors: UInt64 = 0
    /// Dropped on the way out: datagrams and bytes withheld by the anti-amplification bound (3 x the
    /// bytes received until the address is proved); frames too large for one datagram (answered with
    /// their header and status `datagram_too_large`); datagrams the socket had no room for, or failed.
    public var withheldDatagrams: UInt64 = 0
    public var withheldBytes: UInt64 = 0
    public var tooLarge: UInt64 = 0
    public var sendFull: UInt64 = 0
    public var sendErrors: UInt64 = 0

    public init() {}

    /// Every drop counter with its name (metrics, the stats line).
    public static let dropCauses: [(String, @Sendable (UDPStats) -> UInt64)] = [
        ("runt", { $0.runts }), ("bad_length", { $0.badLengths }), ("partial_frame", { $0.partialFrames }),
        ("bad_token", { $0.badTokens }), ("queue_full", { $0.queueFull }), ("closing", { $0.closingDrops }),
        ("refused", { $0.refused }), ("truncated", { $0.truncated }), ("receive_error", { $0.receiveErrors }),
        ("withheld", { $0.withheldDatagrams }), ("too_large", { $0.tooLarge }), ("send_full", { $0.sendFull }),
        ("send_error", { $0.sendErrors }),
    ]
}

/// The counters behind `UDPStats`, each written by one thread (Monitor's or Send's): relaxed stores.
final class UDPCounters: @unchecked Sendable {  // every field is an atomic
    enum Name: Int, CaseIterable {
        // Monitor's.
        case sessionsOpen, sessionsOpened, sessionsProven, datagramsIn, receiveCalls
        case runts, badLengths, partialFrames, badTokens, queueFull, closingDrops, refused, truncated, receiveErrors
        // Send's.
        case datagramsOut, sendCalls, withheldDatagrams, withheldBytes, tooLarge, sendFull, sendErrors
    }

    private let values: UnsafeMutablePointer<UInt64.AtomicRepresentation>

    init() {
        values = .allocate(capacity: Name.allCases.count)
        values.initialize(repeating: .init(0), count: Name.allCases.count)
    }

    deinit { values.deallocate() }

    @inline(__always)
    private func atomic(_ name: Name) -> UnsafeAtomic<UInt64> { UnsafeAtomic(at: values + name.rawValue) }

    /// Only from the counter's owning thread.
    @inline(__always)
    func add(_ name: Name, _ n: UInt64 = 1) {
        let a = atomic(name)
        a.store(a.load(ordering: .relaxed) &+ n, ordering: .relaxed)
    }

    @inline(__always)
    func subtract(_ name: Name) {
        let a = atomic(name)
        a.store(a.load(ordering: .relaxed) &- 1, ordering: .relaxed)
    }

    func value(_ name: Name) -> UInt64 { atomic(name).load(ordering: .relaxed) }

    var snapshot: UDPStats {
        var s = UDPStats()
        s.sessionsOpen = value(.sessionsOpen)
        s.sessionsOpened = value(.sessionsOpened)
        s.sessionsProven = value(.sessionsProven)
        s.datagramsIn = value(.datagramsIn)
        s.datagramsOut = value(.datagramsOut)
        s.receiveCalls = value(.receiveCalls)
        s.sendCalls = value(.sendCalls)
        s.runts = value(.runts)
        s.badLengths = value(.badLengths)
        s.partialFrames = value(.partialFrames)
        s.badTokens = value(.badTokens)
        s.queueFull = value(.queueFull)
        s.closingDrops = value(.closingDrops)
        s.refused = value(.refused)
        s.truncated = value(.truncated)
        s.receiveErrors = value(.receiveErrors)
        s.withheldDatagrams = value(.withheldDatagrams)
        s.withheldBytes = value(.withheldBytes)
        s.tooLarge = value(.tooLarge)
        s.sendFull = value(.sendFull)
        s.sendErrors = value(.sendErrors)
        return s
    }
}
