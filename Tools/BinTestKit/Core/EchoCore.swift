import Atomics
import Glibc
import GatewayCore
import LinkCore

/// `bin_test core`'s application: answers every DATA with the identical frame
/// (no copy), counts sessions opened and closed; for tests it can delay each
/// answer and fail every Nth one. A delay is a timer, not a sleep: delayed answers wait
/// in a queue sent from the clock tick, so a slow core still answers heartbeats at once
/// (a slow core is not a dead one). A LOGIN (`PushFrame.loginCmd`) binds the session
/// to its uid (and joins its room) before its echo, so the echo follows the BIND on the
/// link. With push settings it pushes on the engine's clock ticks (`PushSchedule`).
public final class EchoCore: CoreHandler {
    /// The status a failed answer carries (an application error, not a gateway status).
    public static let failureStatus: UInt32 = 500
    private let delayNanoseconds: UInt64
    /// Answers waiting for their delay (in arrival order, so in due order): Deal-owned. A nil frame is
    /// MOVING's answer, sent after the answers queued before it.
    private var delayed: [(due: UInt64, session: CoreSession, frame: [UInt8]?)] = []
    private var delayedHead = 0
    private let failEvery: Int
    private let schedule: PushSchedule?
    private var answered = 0
    /// LOGIN frames bound, for a schedule that waits for them.
    private var logins = 0
    // Written on the core's Deal stage, read by other threads.
    private let openedCount = ManagedAtomic<Int>(0)
    private let closedCount = ManagedAtomic<Int>(0)
    private let udpOpenedCount = ManagedAtomic<Int>(0)
    private let pushCount = ManagedAtomic<Int>(0)
    public let dataFrames = ManagedAtomic<Int>(0)
    private let movingCount = ManagedAtomic<Int>(0)
    private let movedCount = ManagedAtomic<Int>(0)
    /// Its server, for the summary's move counts (set by CoreMode.start).
    public weak var server: CoreServer?

    /// With `push` (rate above 0) its schedule starts now: the first push is due `push.after` seconds on.
    public init(delayMicroseconds: Int = 0, failEvery: Int = 0, push: PushSettings? = nil) {
        delayNanoseconds = UInt64(delayMicroseconds) * 1000
        self.failEvery = failEvery
        schedule = push.flatMap { $0.rate > 0 ? PushSchedule($0, now: MonotonicTime.now()) : nil }
    }

    public var opened: Int { openedCount.load(ordering: .relaxed) }
    public var closed: Int { closedCount.load(ordering: .relaxed) }
    /// Sessions whose OPENED said the client came over UDP.
    public var udpOpened: Int { udpOpenedCount.load(ordering: .relaxed) }
    /// Pushes sent so far (each one to every link up).
    public var pushes: Int { pushCount.load(ordering: .relaxed) }
    /// MOVING heard, and sessions re-homed by MOVED (a hot restart of the access node).
    public var movingAsked: Int { movingCount.load(ordering: .relaxed) }
    public var moved: Int { movedCount.load(ordering: .relaxed) }

    /// With a delay, MOVING is answered after the answers already waiting for this session.
    public func moving(_ session: CoreSession) {
        movingCount.wrappingIncrement(ordering: .relaxed)
        guard delayNanoseconds > 0 else { return session.readyToMove() }
        delayed.append((MonotonicTime.now() + delayNanoseconds, session, nil))
    }

    public func moved(_ session: CoreSession) {
        movedCount.wrappingIncrement(ordering: .relaxed)
    }

    public func opened(_ session: CoreSession, peer: PeerAddress) {
        openedCount.wrappingIncrement(ordering: .relaxed)
        if session.transport == OpenedTransport.udp { udpOpenedCount.wrappingIncrement(ordering: .relaxed) }
    }

    public func closed(_ session: CoreSession, cause: UInt8) {
        closedCount.wrappingIncrement(ordering: .relaxed)
    }

    public func received(_ frame: Frame, clientFrame: UnsafeRawBufferPointer, from session: CoreSession) {
        dataFrames.wrappingIncrement(ordering: .relaxed)
        let p = clientFrame.baseAddress!
        let cmd = UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt16.self))
        if cmd == PushFrame.loginCmd && clientFrame.count >= FrameHeader.size + 4 {
            session.bind(uid: PushFrame.loadU32(p, FrameHeader.size))
            logins += 1
            if clientFrame.count >= PushFrame.loginLength {
                session.join(room: PushFrame.loadU32(p, FrameHeader.size + 4))
            }
            // Composed, not echo(frame): BIND, JOIN and the echo then share the reply block, one
            // send-ring entry, rather than two.
            let body = UnsafeRawBufferPointer(rebasing: clientFrame[FrameHeader.size...])
            session.send(FrameHeader(decoding: p), body: body)
            return
        }
        if delayNanoseconds > 0 {
            delayed.append((MonotonicTime.now() + delayNanoseconds, session, Array(clientFrame)))
            return
        }
        answered += 1
        if failEvery > 0 && answered % failEvery == 0 {
            var header = FrameHeader(decoding: p)
            header.status = EchoCore.failureStatus
            session.send(header)
        } else {
            session.echo(frame)
        }
    }

    public func presence(_ query: LinkMessage.TreeWide, node: UInt32, count: UInt32) {
        schedule?.presence(seq: query.seq, count: count)
    }

    public var wantsTicks: Bool { schedule != nil || delayNanoseconds > 0 }

    public func tick(milliseconds: UInt64, server: CoreServer) {
        if delayNanoseconds > 0 { answerDelayed(now: MonotonicTime.now()) }
        guard let schedule else { return }
        let sent = schedule.run(now: MonotonicTime.now(), logins: logins, server: server)
        pushCount.wrappingIncrement(by: sent, ordering: .relaxed)
    }

    /// The delayed answers that are due, in order.
    private func answerDelayed(now: UInt64) {
        while delayedHead < delayed.count, delayed[delayedHead].due <= now {
            let (_, session, queued) = delayed[delayedHead]
            delayedHead += 1
            guard let frame = queued else {
                session.readyToMove()
                continue
            }
            answered += 1
            frame.withUnsafeBytes { raw in
                var header = FrameHeader(decoding: raw.baseAddress!)
                let failed = failEvery > 0 && answered % failEvery == 0
                if failed { header.status = EchoCore.failureStatus }
                session.send(header, body: failed ? UnsafeRawBufferPointer(start: nil, count: 0)
                                                  : UnsafeRawBufferPointer(rebasing: raw[FrameHeader.size...]))
            }
        }
        if delayedHead > 0, delayedHead * 2 >= delayed.count {  // compacted: the queue never grows without bound
            delayed.removeFirst(delayedHead)
            delayedHead = 0
        }
    }
}
