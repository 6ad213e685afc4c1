import CLinux
import GatewayCore
import Glibc

/// `bin_test restart-probe`: one thread, one level-triggered epoll loop over nonblocking sockets.
/// Slots 0..<connections are the long-lived connections, the rest a pool of short ones.
final class RestartProbe {
    struct Slot {
        enum Phase {
            /// Short: free. Long: done (after --duration).
            case idle
            /// Long: failed; connects again at `deadline`.
            case waiting
            case connecting
            case open
            /// Long: asked to reconnect; reads only the reply it is owed, then reconnects.
            case leaving
        }

        /// The connection index, and the uid of its frames.
        let index: Int
        let long: Bool
        var fd: Int32 = -1
        /// Bumped at every close and carried in epoll's user data, so that an event still queued
        /// for a closed descriptor is not taken for the slot's next connection.
        var generation: UInt32 = 0
        var phase = Phase.idle
        /// The last request issued; seqs start at 1 and go on across reconnects.
        var seq: UInt32 = 0
        var outstanding = false
        /// Answered: the next request goes once the rest of the read is taken (it may hold a notice).
        var due = false
        /// Bytes of the outstanding request written, and of the frame arriving read.
        var written = 0
        var received = 0
        /// The frame arriving is a PLEASE_RECONNECT.
        var notice = false
        /// When the connect or reply in progress times out, or a waiting slot connects again.
        var deadline: UInt64 = 0
        var watchingWrites = false
        var opens = 0

        var uid: UInt32 { UInt32(truncatingIfNeeded: index) }
    }

    static let noticeSize = FrameHeader.size + 4
    static let retryNanoseconds: UInt64 = 100_000_000
    /// How often timeouts and retries are looked for.
    static let sweepNanoseconds: UInt64 = 100_000_000
    static let eventCapacity = 512
    static let readSize = 64 * 1024

    let settings: RestartProbeSettings
    let pattern: FramePattern
    let address: sockaddr_in
    let slots: UnsafeMutableBufferPointer<Slot>
    /// The header (and a notice's body) of the frame arriving on each slot, `noticeSize` bytes per slot.
    let arriving: UnsafeMutableRawPointer
    let sendBuffer: UnsafeMutableRawPointer
    let readBuffer: UnsafeMutableRawPointer
    let epoll: Int32
    let start: UInt64
    let sendEnd: UInt64
    let end: UInt64
    let timeout: UInt64
    var counts = ProbeCounts()
    var freeShort: [Int]
    var shortsLaunched: UInt64 = 0
    /// Past --duration: nothing new starts.
    var stopping = false
    /// Slots holding a socket.
    var live = 0
    var longOpen = 0
    var announced = false

    init(settings: RestartProbeSettings) {
        self.settings = settings
        pattern = FramePattern(bodySize: settings.size)
        address = ClientSocket.address(host: settings.host, port: settings.port)
        let total = settings.connections + settings.shortSlots
        slots = .allocate(capacity: total)
        for j in 0..<total {
            (slots.baseAddress! + j).initialize(to: Slot(index: j, long: j < settings.connections))
        }
        freeShort = Array((settings.connections..<total).reversed())
        arriving = .allocate(byteCount: total * Self.noticeSize, alignment: 8)
        sendBuffer = .allocate(byteCount: pattern.frameSize, alignment: 64)
        readBuffer = .allocate(byteCount: Self.readSize, alignment: 64)
        epoll = epoll_create1(Int32(EPOLL_CLOEXEC))
        start = MonotonicTime.now()
        sendEnd = start + MonotonicTime.nanoseconds(settings.duration)
        end = sendEnd + MonotonicTime.nanoseconds(settings.grace)
        timeout = MonotonicTime.nanoseconds(settings.timeout)
    }

    deinit {
        slots.deallocate()
        arriving.deallocate()
        sendBuffer.deallocate()
        readBuffer.deallocate()
        pattern.deallocate()
        if epoll >= 0 { Glibc.close(epoll) }
    }

    func run() -> ProbeCounts {
        guard epoll >= 0 else {
            counts.note("epoll_create1: \(ClientSocket.describe(errno))")
            return counts
        }
        let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: Self.eventCapacity)
        defer { events.deallocate() }
        let waiter = EventWait(epoll: epoll)
        for j in 0..<settings.connections { connect(j, now: start) }
        var nextSweep = start + Self.sweepNanoseconds
        while true {
            let now = MonotonicTime.now()
            if !stopping && now >= sendEnd { beginStop() }
            if now >= end || (stopping && live == 0) { break }
            if !stopping { launchShorts(now) }
            if now >= nextSweep {
                sweep(now)
                nextSweep = now + Self.sweepNanoseconds
            }
            var wake = min(nextSweep, end)
            if !stopping { wake = min(wake, sendEnd, nextShortDue) }
            let count = waiter.wait(events, capacity: Int32(Self.eventCapacity),
                                    nanoseconds: wake > now ? wake - now : 0)
            for k in 0..<count { handle(events[k]) }
        }
        expire()
        counts.elapsed = MonotonicTime.now() - start
        return counts
    }

    // MARK: timers

    /// The k-th short connection is due at start + k / rate.
    private var nextShortDue: UInt64 {
        settings.rate == 0 ? .max : start + UInt64(Double(shortsLaunched) * 1e9 / settings.rate)
    }

    /// Starts every short connection due; with the pool empty the schedule waits for a free slot.
    private func launchShorts(_ now: UInt64) {
        while nextShortDue <= now && nextShortDue < sendEnd, let j = freeShort.popLast() {
            shortsLaunched += 1
            counts.shortAttempts += 1
            connect(j, now: now)
        }
    }

    private func sweep(_ now: UInt64) {
        for j in slots.indices where now >= slots[j].deadline {
            switch slots[j].phase {
            case .waiting:
                connect(j, now: now)
            case .connecting:
                counts.connectTimeouts += 1
                note(j, "not connected within --timeout", now: now)
                closeSocket(j)
                retire(j, now: now)
            case .open where slots[j].outstanding, .leaving where slots[j].outstanding:
                counts.replyTimeouts += 1
                note(j, "no reply to seq \(slots[j].seq) within --timeout", now: now)
                closeSocket(j)
                retire(j, now: now)
            case .idle, .open, .leaving:
                break
            }
        }
    }

    /// Past --duration: long-lived connections with nothing owed close; the rest finish first.
    private func beginStop() {
        stopping = true
        counts.longOpenAtStop = longOpen
        for j in 0..<settings.connections {
            switch slots[j].phase {
            case .waiting: slots[j].phase = .idle
            case .open where !slots[j].outstanding: closeSocket(j)
            case .idle, .connecting, .open, .leaving: break
            }
        }
    }

    /// The end of --grace: a connect still pending is a timeout; a request still unanswered is lost.
    private func expire() {
        let now = MonotonicTime.now()
        for j in slots.indices where slots[j].fd >= 0 {
            if slots[j].phase == .connecting {
                counts.connectTimeouts += 1
                note(j, "not connected by the end of --grace", now: now)
            } else if slots[j].outstanding {
                note(j, "seq \(slots[j].seq) still unanswered at the end of --grace", now: now)
            }
            closeSocket(j)
        }
    }

    // MARK: connections

    func connect(_ j: Int, now: UInt64) {
        slots[j].deadline = now + timeout
        switch ClientSocket.connect(to: address, from: nil) {
        case .failed(let error):
            connectFailed(j, error, now: now)
        case .started(let fd):
            slots[j].fd = fd
            slots[j].phase = .connecting
            live += 1
            if !watch(j, writes: true, operation: EPOLL_CTL_ADD) {
                connectFailed(j, errno, now: now)
            }
        }
    }

    private func finishConnect(_ j: Int, now: UInt64) {
        let error = ClientSocket.pendingError(slots[j].fd)
        guard error == 0 else { return connectFailed(j, error, now: now) }
        guard watch(j, writes: false, operation: EPOLL_CTL_MOD) else { return connectFailed(j, errno, now: now) }
        slots[j].phase = .open
        slots[j].opens += 1
        guard slots[j].long else { return issue(j, now: now) }
        longOpen += 1
        if slots[j].opens > 1 { counts.reconnects += 1 }
        if !announced && longOpen == settings.connections {
            announced = true
            StandardError.write("restart-probe: \(longOpen) connections open\n")
        }
        if stopping {
            closeSocket(j)
        } else {
            issue(j, now: now)
        }
    }

    private func connectFailed(_ j: Int, _ error: Int32, now: UInt64) {
        if error == ECONNREFUSED {
            counts.connectRefused += 1
        } else {
            counts.connectFailed += 1
        }
        note(j, "connect failed: \(ClientSocket.describe(error))", now: now)
        closeSocket(j)
        retire(j, now: now)
    }

    /// A reset or another error on an open connection.
    func failed(_ j: Int, _ error: Int32, now: UInt64) {
        counts.resets += 1
        note(j, "\(ClientSocket.describe(error))", now: now)
        closeSocket(j)
        retire(j, now: now)
    }

    func serverClosed(_ j: Int, now: UInt64) {
        counts.serverCloses += 1
        note(j, "closed by the server", now: now)
        closeSocket(j)
        retire(j, now: now)
    }

    /// What a connection that ended does next: a long-lived one connects again a little later.
    func retire(_ j: Int, now: UInt64) {
        if !slots[j].long {
            freeShort.append(j)
        } else if !stopping {
            slots[j].phase = .waiting
            slots[j].deadline = now + Self.retryNanoseconds
        }
    }

    /// Closes the socket, if any; a request still outstanding on it is lost.
    func closeSocket(_ j: Int) {
        if slots[j].outstanding {
            counts.lost += 1
            slots[j].outstanding = false
        }
        if slots[j].fd >= 0 {
            Glibc.close(slots[j].fd)
            live -= 1
            if slots[j].long && (slots[j].phase == .open || slots[j].phase == .leaving) { longOpen -= 1 }
        }
        slots[j].fd = -1
        slots[j].generation &+= 1
        slots[j].phase = .idle
        slots[j].written = 0
        slots[j].received = 0
        slots[j].notice = false
        slots[j].due = false
        slots[j].watchingWrites = false
    }

    /// Registers (or changes) the slot's interest: always reads, writes while connecting or blocked.
    func watch(_ j: Int, writes: Bool, operation: Int32) -> Bool {
        var event = epoll_event()
        event.events = EPOLLIN.rawValue | EPOLLRDHUP.rawValue | (writes ? EPOLLOUT.rawValue : 0)
        event.data.u64 = UInt64(j) | UInt64(slots[j].generation) << 32
        slots[j].watchingWrites = writes
        return epoll_ctl(epoll, operation, slots[j].fd, &event) == 0
    }

    private func handle(_ event: epoll_event) {
        let j = Int(truncatingIfNeeded: event.data.u64 & 0xFFFF_FFFF)
        let generation = UInt32(truncatingIfNeeded: event.data.u64 >> 32)
        guard slots[j].generation == generation, slots[j].fd >= 0 else { return }
        let now = MonotonicTime.now()
        // Level-triggered: whatever else is ready is reported again on the next wait.
        if slots[j].phase == .connecting { return finishConnect(j, now: now) }
        let readable = EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue
        if event.events & readable != 0 {
            receive(j, now: now)
            guard slots[j].generation == generation else { return }
        }
        if event.events & EPOLLOUT.rawValue != 0 { flush(j, now: now) }
    }

    func note(_ j: Int, _ what: String, now: UInt64) {
        let kind = slots[j].long ? "conn" : "short conn"
        counts.note("\(kind) \(slots[j].index) at \(Format.fixed(Double(now - start) / 1e9, 3)) s: \(what)")
    }
}
