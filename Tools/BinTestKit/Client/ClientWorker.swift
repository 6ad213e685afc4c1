import Glibc
import CLinux
import CTLS
import GatewayCore

/// One client thread: a share of the connections, one epoll loop (edge-triggered,
/// nonblocking sockets), its own histogram and counters.
///
/// @unchecked Sendable: the main thread creates it and hands it to its pthread; from then
/// on only that thread touches it (except the atomic `counters`) until pthread_join,
/// after which the main thread reads `result`.
final class ClientWorker: @unchecked Sendable {
    enum IdlePhase { case proving, holding, reproving }
    /// Push mode: logging in, then waiting for the first push, which opens the window of reading.
    enum PushPhase { case loggingIn, awaitingPush, reading }

    static let bufferSize = 256 * 1024
    static let eventCapacity = 512

    let settings: ClientSettings
    let counters = WorkerCounters()
    var result = WorkerResult()

    let pattern: FramePattern
    let address: sockaddr_in
    /// Local addresses to connect from, taken in turn; empty: the kernel picks.
    let sources: [sockaddr_in]
    var nextSource = 0
    let startTime: UInt64
    let sendDeadline: UInt64
    /// When what is still outstanding counts as stalled; idle mode moves it per phase.
    var deadline: UInt64
    let graceNanoseconds: UInt64
    let cap: UInt32

    let slots: UnsafeMutableBufferPointer<ConnectionSlot>
    /// Send (or scheduled) times, `1 << ringShift` per slot (the in-flight cap rounded up
    /// to a power of two), indexed by seq.
    let stamps: UnsafeMutablePointer<UInt64>
    let ringShift: Int
    /// The header of the reply arriving on each slot, `headerStride` bytes per slot (push mode
    /// keeps a push's stamp, target and scope there too).
    let headers: UnsafeMutableRawPointer
    let headerStride: Int
    let sendBuffer: UnsafeMutableRawPointer
    let receiveBuffer: UnsafeMutableRawPointer
    let epoll: Int32
    let waiter: EventWait
    /// --tls: the client context every connection is made from (nil without --tls, or if it failed).
    let tlsContext: OpaquePointer?
    var tlsFailure: String?

    /// Slots connecting or open.
    var live = 0
    var open = 0
    /// Past --duration: no new requests (or cycles), only replies still owed.
    var stopping = false

    /// Open loop: nanoseconds between consecutive requests over all connections, and the
    /// next (round, slot) of this worker's round-robin share of the schedule.
    let period: Double?
    var cursorSlot = 0
    var cursorRound: UInt64 = 0

    var idlePhase = IdlePhase.proving
    var holdEnd: UInt64 = 0

    /// --transport ws: each slot's reader of the gateway's frames, and a message's unsent rest.
    let webSocketReaders: UnsafeMutableBufferPointer<WebSocketReader>
    var webSocketPending: [Int: [UInt8]] = [:]

    var pushPhase = PushPhase.loggingIn
    /// Push mode: connections neither logged in nor closed.
    var loginsPending: Int
    /// Push mode with --count: pushes this worker's connections are still owed; at 0 the window closes.
    var pushesOwed: UInt64

    /// `connections` are the global indices this worker owns; `budgets` what each may issue.
    init(settings: ClientSettings, connections: [Int], budgets: [UInt64], startTime: UInt64) {
        self.settings = settings
        pattern = FramePattern(bodySize: settings.mode == .push ? settings.pushSize : settings.size)
        address = ClientSocket.address(host: settings.host, port: settings.port)
        sources = settings.sources.map { ClientSocket.address(host: $0, port: 0) }
        self.startTime = startTime
        sendDeadline = startTime + MonotonicTime.nanoseconds(settings.duration)
        graceNanoseconds = MonotonicTime.nanoseconds(settings.grace)
        // Idle and push modes move the deadline per phase; the first one bounds connecting and logging in.
        let phased = settings.mode == .idle || settings.mode == .push
        deadline = phased ? startTime + graceNanoseconds : sendDeadline + graceNanoseconds
        cap = UInt32(settings.inFlightCap)
        loginsPending = settings.mode == .push ? connections.count : 0
        pushesOwed = settings.mode == .push && settings.count != nil ? budgets.reduce(0, +) : .max
        period = settings.rate.map { 1e9 / $0 }

        slots = .allocate(capacity: connections.count)
        for (k, index) in connections.enumerated() {
            (slots.baseAddress! + k).initialize(to: ConnectionSlot(index: index, budget: budgets[k]))
        }
        webSocketReaders = .allocate(capacity: settings.transport == .ws ? connections.count : 0)
        webSocketReaders.initialize(repeating: WebSocketReader(fromClient: false))
        var shift = 0
        while (1 << shift) < settings.inFlightCap { shift += 1 }
        ringShift = shift
        stamps = .allocate(capacity: connections.count << shift)
        headerStride = settings.mode == .push ? Self.pushPrefix : FrameHeader.size
        headers = .allocate(byteCount: connections.count * headerStride, alignment: 8)
        sendBuffer = .allocate(byteCount: Self.bufferSize, alignment: 64)
        receiveBuffer = .allocate(byteCount: Self.bufferSize, alignment: 64)
        epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        waiter = EventWait(epoll: epoll)
        if settings.tls {
            var error = [CChar](repeating: 0, count: 512)
            tlsContext = gw_tls_client_context(settings.tlsCA == nil ? 0 : 1, settings.tlsCA, nil, nil, &error,
                                               error.count)
            if tlsContext == nil {
                tlsFailure = String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            }
        } else {
            tlsContext = nil
        }
    }

    deinit {
        slots.deallocate()
        webSocketReaders.deallocate()
        stamps.deallocate()
        headers.deallocate()
        sendBuffer.deallocate()
        receiveBuffer.deallocate()
        pattern.deallocate()
        if epoll >= 0 { Glibc.close(epoll) }
        if let tlsContext { gw_tls_context_free(tlsContext) }
    }

    func run() {
        let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: Self.eventCapacity)
        defer { events.deallocate() }
        if epoll < 0 {
            result.errors += 1
            result.note("epoll_create1 failed: \(ClientSocket.describe(errno))")
        } else if let tlsFailure {
            result.errors += 1
            result.note("--tls: \(tlsFailure)")
        } else {
            let now = MonotonicTime.now()
            for j in slots.indices where slots[j].budget > 0 { openConnection(j, now: now) }
        }
        while live > 0 {
            let now = MonotonicTime.now()
            tick(now)
            if now >= deadline {
                expire(keepAnswered: false)
                break
            }
            if live == 0 { break }
            let count = waiter.wait(events, capacity: Int32(Self.eventCapacity), nanoseconds: nextWake(now) - now)
            for k in 0..<count { handle(events[k]) }
            publish()
        }
        for j in slots.indices { close(j) }
        result.endTime = MonotonicTime.now()
        publish()
        counters.finished.store(true, ordering: .releasing)
    }

    /// Timers: the end of sending, the open-loop schedule, idle- and push-mode phases.
    private func tick(_ now: UInt64) {
        switch settings.mode {
        case .idle: return idleTick(now)
        case .push: return pushTick(now)
        case .load, .pingpong, .connrate: break
        }
        if !stopping && now >= sendDeadline { beginStop() }
        if period != nil && !stopping { scheduleTick(now) }
    }

    private func nextWake(_ now: UInt64) -> UInt64 {
        var wake = deadline
        if settings.mode == .idle {
            if idlePhase == .holding { wake = min(wake, holdEnd) }
        } else if settings.mode != .push && !stopping {
            wake = min(wake, sendDeadline)
            if period != nil { wake = min(wake, scheduledTime(slot: cursorSlot, round: cursorRound)) }
        }
        return max(wake, now)
    }

    private func handle(_ event: epoll_event) {
        let data = event.data.u64
        let j = Int(truncatingIfNeeded: data & 0xFFFF_FFFF)
        let generation = UInt32(truncatingIfNeeded: data >> 32)
        guard slots[j].generation == generation, slots[j].fd >= 0 else { return }
        let flags = event.events
        if slots[j].phase == .connecting {
            if slots[j].handshaking {
                continueHandshake(j)
            } else if slots[j].upgrading {
                continueUpgrade(j)
            } else {
                finishConnect(j)
            }
            // Open once its TLS handshake and its WebSocket handshake (when it has them) are done.
            guard slots[j].generation == generation, slots[j].phase != .connecting else { return }
        }
        let hangup = flags & (EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0
        if hangup || flags & EPOLLIN.rawValue != 0 {
            let outcome = receive(j, hangup: hangup)
            if outcome.replies > 0 && slots[j].generation == generation { afterReplies(j, now: outcome.time) }
            guard slots[j].generation == generation else { return }
            if let end = outcome.end {
                serverClosed(j, end)
                return
            }
        }
        if flags & EPOLLOUT.rawValue != 0 {
            slots[j].writable = true
            flush(j)
        }
    }

    /// Relaxed stores: the worker is the only writer, and progress needs no ordering.
    private func publish() {
        counters.replies.store(result.replies, ordering: .relaxed)
        counters.replyBytes.store(result.replyBytes, ordering: .relaxed)
        counters.errors.store(result.errors, ordering: .relaxed)
        counters.connectFailures.store(result.connectFailures, ordering: .relaxed)
        counters.connections.store(result.connections, ordering: .relaxed)
        counters.open.store(open, ordering: .relaxed)
    }

    @inline(__always)
    func stampIndex(_ j: Int, _ seq: UInt32) -> Int {
        (j << ringShift) | (Int(seq) & ((1 << ringShift) - 1))
    }
}
