import CLinux
import Glibc
import Logging

/// Receive: reads big blocks from readable connections into a shared read
/// block, cuts them into frames and puts the frames on each connection's
/// receive ring for Deal. Owns the idle-timeout wheel.
final class ReceiveStage: StageWorker, @unchecked Sendable {  // runs on its own thread; shared state is in atomics
    let input: StageInbox
    unowned(unsafe) let engine: Engine
    let table: ConnectionTable
    private let pool: ChunkPool
    private let maxFrame: Int
    /// Timeouts and limits a reload may change, taken at the next tick.
    @exclusivity(unchecked) private var live: LiveSettings
    @exclusivity(unchecked) private var liveVersion: UInt64 = 0
    /// Clients not read while shedding, resumed in order once memory has drained.
    @exclusivity(unchecked) private var parked: [ConnectionID] = []
    @exclusivity(unchecked) private var shedding = false
    private var shedsClients: Bool { live.maxBufferedBytes > 0 }
    /// How long a graceful close waits for the client's end of stream (as nginx's lingering close).
    private let lingerTicks: UInt64
    private static let lingerMilliseconds: UInt64 = 2000
    /// udp_idle_timeout: a UDP session has no end of stream, so it ends when its datagrams stop.
    private let udpIdleTicks: UInt64
    private let wheel: TimerWheel
    /// Receive rings that kept their storage after a read: given back at a tick once Deal has dealt them.
    /// Once a second at its ticks Receive also trims the ring pool (RingPool.trim).
    private let trimTicks: UInt64
    @exclusivity(unchecked) private var nextTrimTick: UInt64 = 0
    private let ringSweep: RingSweep
    /// The block reads land in, shared by all connections; a read never waits for a whole frame.
    // Stage state is owned by the token holder alone, so run-time exclusivity checks are dropped.
    @exclusivity(unchecked) private var block: Chunk?
    @exclusivity(unchecked) private var blockUsed = 0
    /// A block with less room than this is retired, so that each read can be big.
    private static let minimumRoom = 8 << 10
    @exclusivity(unchecked) var inlineAllowance = 0
    @exclusivity(unchecked) private(set) var bytesMoved = 0
    // A strong `let`, borrowed from the stage for every call: an `unowned(unsafe)` existential is
    // copied, a retain and a release on each of the per-turn calls (perf/RESULTS.md). No cycle: the
    // poller holds no stage.
    private let poller: Poller
    /// The tick of the last max_pending_bytes scan: one a tick at most.
    @exclusivity(unchecked) private var pendingScanTick: UInt64 = .max

    init(engine: Engine) {
        self.engine = engine
        table = engine.table
        pool = engine.pool
        poller = engine.poller
        maxFrame = engine.config.maxFrame
        let tickMs = UInt64(engine.config.tickMilliseconds)
        live = engine.live.current
        lingerTicks = (Self.lingerMilliseconds + tickMs - 1) / tickMs
        trimTicks = max(1, 1000 / tickMs)
        udpIdleTicks = (UInt64(engine.config.udpIdleTimeout) * 1000 + tickMs - 1) / tickMs
        wheel = TimerWheel(nodes: table.timerNodes(\.receiveTimer))
        ringSweep = RingSweep(capacity: table.capacity, flag: \.receive.ringListed)
        input = StageInbox(name: "receive", gate: \.receiveGate, capacity: engine.inboxCapacity)
    }

    deinit {
        if let block { pool.release(block) }
    }

    func service(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) {
        if wheel.now != input.currentTick { advanceTimers(to: input.currentTick) }
        if holdsForHandover(id, s) { return }
        if let lingering = s.endings.lingering {
            discardUntilEnd(id, s, cause: lingering)
            return
        }
        guard !s.endings.hasInputEnded else { return }
        if engine.isStopping {
            if engine.endInput(s, cause: .shutdown) {
                engine.deal.postOrRun(s, id, allowance: &inlineAllowance)
            }
            return
        }
        if shedsClients, s.pointee.monitor.isClient, mustShed() {
            park(id, s)
            return
        }
        if s.pointee.receive.awaitingProxy {
            guard readProxyHeader(id, s) else { return }
        }
        // Still timing the opening: it may have been finished by another thread (TLS handshakes).
        if s.pointee.monitor.transport != TransportKind.plain.rawValue,
           !s.transportIsReady || s.pointee.receive.openingTimed {
            guard openTransport(id, s) else { return }
        }
        if idleTicks(s) > 0, s.pointee.receiveTimerGeneration != id.generation || !wheel.isArmed(id.index) {
            s.pointee.receive.lastReceiveTick = wheel.now
            s.pointee.receiveTimerGeneration = id.generation
            wheel.schedule(id.index, after: idleTicks(s))
            publishTimers()
        }
        readUntilDrained(id, s)
    }

    func batchDone() {
        poller.applyInterest()
        if ringSweep.sweepIfLong(table, ring: { table.receiveRing($0) }), ringSweep.count == 0 { publishTimers() }
    }

    private func readUntilDrained(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) {
        let ring = table.receiveRing(id.index)
        let fd = s.pointee.monitor.fd
        var delivered = false
        defer {
            if delivered { engine.deal.postOrRun(s, id, allowance: &inlineAllowance) }
            // Dealt already (Deal ran inline) or nothing came: no storage held; else at a tick.
            if ringSweep.detachOrKeep(ring, id, s) { publishTimers() }
        }
        let client = shedsClients && s.pointee.monitor.isClient
        let plain = s.pointee.monitor.transport == TransportKind.plain.rawValue
        while true {
            if client, mustShed() {  // checked before every read: one connection's reads can be many
                park(id, s)
                break
            }
            // One read yields at most two descriptors (a completed frame and a run of frames).
            if ring.freeCount < 2 {
                s.atomic(\.receivePaused).store(1, ordering: .sequentiallyConsistent)
                if ring.freeCount < 2 { return }  // Deal resumes us when it frees room
                s.atomic(\.receivePaused).store(0, ordering: .relaxed)
            }
            let block = currentBlock()
            let room = block.capacity - blockUsed
            let n = plain ? read(fd, block.bytes + blockUsed, room) : readTransport(id, s, block.bytes + blockUsed, room)
            if n == Self.transportClosed { return }
            if n == Self.transportControl {
                s.pointee.receive.lastReceiveTick = wheel.now  // a ping is a heartbeat
                continue
            }
            if n > 0 {
                engine.counters.add(.bytesIn, UInt64(n))
                bytesMoved &+= n
                s.pointee.receive.lastReceiveTick = wheel.now
                // A link frame may carry a whole client frame plus DATA's session id.
                let limit = !s.pointee.monitor.isClient ? maxFrame + LinkMessage.maxOverhead : maxFrame
                let assembly = s.pointer(to: \.receive.assembly)!
                let (heldBefore, wasPartial) = (assembly.pointee.heldBytes, assembly.pointee.isPartial)
                let outcome = assembly.pointee.consume(
                    block: block, start: blockUsed, count: n, maxFrame: limit, pool: pool
                ) { d in
                    _ = ring.push(d)
                }
                if assembly.pointee.heldBytes != heldBefore { pendingChanged(by: assembly.pointee.heldBytes - heldBefore) }
                if !wasPartial && assembly.pointee.isPartial { frameBegan(id, s) }
                switch outcome {
                case .ok(let end, let frames):
                    blockUsed = end
                    delivered = delivered || frames > 0
                case .badLength(let length, let frames):
                    delivered = delivered || frames > 0
                    engine.protocolError(id, length: length)
                    return
                }
                // A short read drained the socket (the next arrival raises a new event),
                // unless the end of stream came in the same event: it raises none. A transport
                // knows whether its own read was short, and is read until it would block.
                if n < room && plain && !s.endings.hungUp { break }
            } else if n == 0 {
                // Deal, handed the connection on the way out, deals what is left and lets Send close it.
                delivered = engine.endInput(s, cause: .peer) || delivered
                return
            } else {
                let e = gw_errno()
                if e == EINTR { continue }
                if e == EAGAIN || e == EWOULDBLOCK { break }
                engine.requestClose(id, cause: e == ECONNRESET ? .peer : .ioError)
                return
            }
        }
        poller.resumeReading(id.packed)
    }

    /// `readTransport`'s answers when it has requested the connection's close, and when only the
    /// transport's own frames came (no frame bytes, but the peer is alive).
    private static let transportClosed = Int.min
    private static let transportControl = Int.min + 1

    /// A transport's read, as read(2) answers: bytes, 0 at the end of stream, -1 with EAGAIN when it
    /// would block; `transportClosed` once a failure has requested the close with its own cause.
    private func readTransport(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>,
                               _ buffer: UnsafeMutableRawPointer, _ room: Int) -> Int {
        switch engine.transport(of: s).read(id, s, into: buffer, count: room) {
        case .bytes(let n): return n
        case .end: return 0
        case .control: return Self.transportControl
        case .wouldBlock:
            errno = EAGAIN
            return -1
        case .failed(let cause):
            engine.requestClose(id, cause: cause)
            return Self.transportClosed
        }
    }

    /// A transport's opening (a WebSocket or TLS handshake), bounded by its deadline from the first turn
    /// (after any PROXY header). True once frames may flow: the idle timer takes over, and Send, which
    /// waited for it, is handed anything already queued.
    private func openTransport(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) -> Bool {
        let transport = engine.transport(of: s)
        if !s.pointee.receive.openingTimed || s.pointee.receiveTimerGeneration != id.generation {
            s.pointee.receive.openingTimed = true
            s.pointee.receive.frameStartTick = wheel.now
            s.pointee.receiveTimerGeneration = id.generation
            wheel.schedule(id.index, after: transport.openTicks(s))
            publishTimers()
        }
        switch transport.open(id, s) {
        case .ready:
            s.pointee.receive.openingTimed = false
            s.pointee.receive.lastReceiveTick = wheel.now
            if idleTicks(s) > 0 { wheel.schedule(id.index, after: idleTicks(s)) } else { wheel.cancel(id.index) }
            publishTimers()
            if table.sendRing(id.index).count > 0 { engine.send.input.post(s, id) }
            return true
        case .pending:
            poller.resumeReading(id.packed)
            return false
        case .retry:
            wheel.schedule(id.index, after: 1)  // the timer posts this connection again
            publishTimers()
            return false
        case .handedOff:
            return false
        case .failed(let cause):
            engine.requestClose(id, cause: cause)
            return false
        }
    }

    /// Reads the PROXY header a balancer sends first (peeking, so that nothing after it
    /// is consumed), then checks the client it names against the lists and limits.
    /// True once the header is gone and the connection's own bytes may be read.
    private func readProxyHeader(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) -> Bool {
        if s.pointee.receiveTimerGeneration != id.generation || !wheel.isArmed(id.index) {
            // First turn: the header's deadline starts.
            s.pointee.receive.frameStartTick = wheel.now
            s.pointee.receiveTimerGeneration = id.generation
            wheel.schedule(id.index, after: live.proxyTicks)
            publishTimers()
        }
        let block = currentBlock()
        let room = min(block.capacity - blockUsed, 4096)
        let n = recv(s.pointee.monitor.fd, block.bytes + blockUsed, room, Int32(MSG_PEEK))
        if n == 0 || (n < 0 && gw_errno() != EAGAIN && gw_errno() != EWOULDBLOCK && gw_errno() != EINTR) {
            engine.requestClose(id, cause: n == 0 ? .peer : .ioError)
            return false
        }
        let verdict = n > 0 ? ProxyHeader.parse(block.bytes + blockUsed, count: n) : .incomplete
        switch verdict {
        case .incomplete where n < room:
            // A peek drains nothing, so reading is not resumed (poll would report the same bytes
            // at once): the next tick looks again.
            wheel.schedule(id.index, after: 1)
            return false
        case .incomplete, .invalid:
            engine.logger.debug("closing \(s.pointee.monitor.peer): no valid PROXY header (\(verdict))")
            engine.requestClose(id, cause: .proxyHeader)
            return false
        case .header(let length, let source):
            // The peek showed it whole, so this takes it whole; anything else is a broken socket.
            guard recv(s.pointee.monitor.fd, block.bytes + blockUsed, length, 0) == length else {
                engine.requestClose(id, cause: .ioError)
                return false
            }
            s.pointee.receive.awaitingProxy = false
            if let source { s.pointee.monitor.peer = source }
            if let refusal = engine.refusal(of: s.pointee.monitor.peer) {
                engine.requestClose(id, cause: refusal)
                return false
            }
            if engine.limits.countsConnections { s.atomic(\.addressCounted).store(1, ordering: .releasing) }
            // The idle timer takes over from the header's deadline.
            s.pointee.receive.lastReceiveTick = wheel.now
            if idleTicks(s) > 0 { wheel.schedule(id.index, after: idleTicks(s)) } else { wheel.cancel(id.index) }
            publishTimers()
            return true
        }
    }

    /// A graceful close waits for the client's end of stream, for at most
    /// `lingerTicks`; what arrives meanwhile is read into spare block space and dropped.
    private func discardUntilEnd(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>, cause: CloseCause) {
        if s.pointee.receiveTimerGeneration != id.generation || !s.pointee.receive.lingerTimed {
            s.pointee.receiveTimerGeneration = id.generation
            s.pointee.receive.lingerTimed = true
            wheel.schedule(id.index, after: lingerTicks)
            publishTimers()
        }
        let block = currentBlock()
        while true {
            let n = read(s.pointee.monitor.fd, block.bytes + blockUsed, block.capacity - blockUsed)
            if n > 0 { continue }
            if n < 0 && gw_errno() == EINTR { continue }
            if n < 0 && (gw_errno() == EAGAIN || gw_errno() == EWOULDBLOCK) { break }
            engine.requestClose(id, cause: cause)  // end of stream (or the client reset): done
            return
        }
        poller.resumeReading(id.packed)
    }

    /// The shared read block, replaced when too full for a big read.
    @inline(__always)
    private func currentBlock() -> Chunk {
        if let block, block.capacity - blockUsed >= Self.minimumRoom { return block }
        if let block { pool.release(block) }
        let fresh = pool.allocate(capacity: ChunkPool.blockCapacity)
        block = fresh
        blockUsed = 0
        return fresh
    }

    /// Tells the clock whether this stage needs ticks: for its timers, and while shedding.
    private func publishTimers() {
        input.armedTimers.store(wheel.count + (shedding ? 1 : 0) + (ringSweep.count > 0 ? 1 : 0), ordering: .relaxed)
    }

    /// Past max_buffered_bytes clients are not read (TCP pushes back on them) while links
    /// are, so replies drain; reading resumes below three quarters of it.
    private func mustShed() -> Bool {
        let held = engine.pool.bytesInUse
        if !shedding, held > live.maxBufferedBytes {
            shedding = true
            engine.counters.set(.shedding, 1)
            engine.counters.add(.sheddingSpells)
            publishTimers()  // ticks come while shedding, to check for the drain
            let why = "buffers hold \(held) bytes, over max_buffered_bytes \(live.maxBufferedBytes)"
            engine.logger.warning("\(why): not reading clients until they drain")
        }
        return shedding
    }

    private func park(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) {
        guard !s.pointee.receive.parked else { return }
        s.pointee.receive.parked = true
        parked.append(id)
    }

    /// Every tick while shedding: below three quarters of the limit, the parked clients are read again.
    private func checkDrained() {
        // A reload that turned the limit off ends the spell too.
        guard shedding, live.maxBufferedBytes == 0 || engine.pool.bytesInUse <= live.maxBufferedBytes / 4 * 3 else {
            return
        }
        shedding = false
        engine.counters.set(.shedding, 0)
        publishTimers()
        engine.logger.notice("buffers drained: reading \(parked.count) parked clients again")
        for id in parked {
            let s = table.slot(id.index)
            guard s.holds(id) else { continue }
            s.pointee.receive.parked = false
            input.post(s, id)
        }
        parked.removeAll(keepingCapacity: true)
    }

    /// One timer per connection bounds both idleness and an incomplete frame's age:
    /// it is armed for whichever is due first and, when it fires, checks both.
    func advanceTimers(to tick: UInt64) {
        if let newer = engine.live.newer(than: &liveVersion) { live = newer }
        checkDrained()
        if ringSweep.count > 0 {
            ringSweep.sweep(table) { table.receiveRing($0) }
            if ringSweep.count == 0 { publishTimers() }
        }
        if tick >= nextTrimTick {
            nextTrimTick = tick &+ trimTicks
            table.rings.trim()
        }
        if live.maxPendingBytes > 0 {  // growth in a tick already scanned is looked at on the next one
            let total = engine.pendingBytes.load(ordering: .relaxed)
            if total > live.maxPendingBytes { enforcePendingLimit(total) }
        }
        wheel.advance(to: tick) { index in
            let s = table.slot(index)
            let gen = s.generation.load(ordering: .acquiring)
            guard s.pointee.receiveTimerGeneration == gen, s.state == .open else { return }
            let id = ConnectionID(index: index, generation: gen)
            if let lingering = s.endings.lingering {
                engine.requestClose(id, cause: lingering)
                return
            }
            let now = wheel.now
            if s.pointee.receive.awaitingProxy {
                if now &- s.pointee.receive.frameStartTick >= live.proxyTicks {
                    engine.requestClose(id, cause: .proxyHeader)
                } else {
                    // poll: look at the header's bytes again now that more may have come.
                    wheel.schedule(index, after: min(live.proxyTicks - (now &- s.pointee.receive.frameStartTick), 1))
                    input.post(s, id)
                }
                return
            }
            if s.pointee.receive.openingTimed {
                let transport = engine.transport(of: s)
                if s.transportIsReady {  // finished on another thread, which has posted it here
                    input.post(s, id)
                } else if now &- s.pointee.receive.frameStartTick >= transport.openTicks(s) {
                    engine.logger.debug("closing \(s.pointee.monitor.peer): its handshake did not finish in time")
                    engine.requestClose(id, cause: transport.openTimeoutCause(s))
                } else {
                    // Look again (an opening that wanted room in the socket), then at the deadline.
                    wheel.schedule(index, after: transport.openTicks(s) - (now &- s.pointee.receive.frameStartTick))
                    input.post(s, id)
                }
                return
            }
            if idleTicks(s) > 0, now &- s.pointee.receive.lastReceiveTick >= idleTicks(s) {
                engine.requestClose(id, cause: .idle)
            } else if live.frameTicks > 0, s.pointee.receive.assembly.isPartial, now &- s.pointee.receive.frameStartTick >= live.frameTicks {
                let (peer, timeout) = (s.pointee.monitor.peer, engine.config.frameTimeout)
                engine.logger.debug("closing \(peer): a frame begun \(timeout) s ago is not complete")
                engine.requestClose(id, cause: .frameTimeout)
            } else if let due = nextDue(s) {
                wheel.schedule(index, after: max(1, due &- now))
            }
        }
        publishTimers()
    }

    /// The connection's idle timeout in ticks (0: none): idle_timeout, or udp_idle_timeout for a UDP session.
    @inline(__always)
    private func idleTicks(_ s: UnsafeMutablePointer<ConnectionSlot>) -> UInt64 {
        s.pointee.monitor.transport == TransportKind.udp.rawValue ? udpIdleTicks : live.idleTicks
    }

    /// The tick the receive timer must fire at next, if any limit applies.
    private func nextDue(_ s: UnsafeMutablePointer<ConnectionSlot>) -> UInt64? {
        var due: UInt64?
        if idleTicks(s) > 0 { due = s.pointee.receive.lastReceiveTick &+ idleTicks(s) }
        if live.frameTicks > 0, s.pointee.receive.assembly.isPartial {
            due = min(due ?? .max, s.pointee.receive.frameStartTick &+ live.frameTicks)
        }
        return due
    }

    /// A frame began in this read and is not complete: frame_timeout starts, and the
    /// timer moves nearer if it was armed later (or not at all).
    private func frameBegan(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) {
        guard live.frameTicks > 0 else { return }
        s.pointee.receive.frameStartTick = wheel.now
        let idle = idleTicks(s)
        if idle == 0 || live.frameTicks < idle || s.pointee.receiveTimerGeneration != id.generation {
            s.pointee.receiveTimerGeneration = id.generation
            wheel.schedule(id.index, after: min(live.frameTicks, idle == 0 ? live.frameTicks : idle))
            publishTimers()
        }
    }

    /// Incomplete frames grew or shrank by `delta` bytes. Past max_pending_bytes the
    /// open connections holding the most are closed until the rest fit.
    private func pendingChanged(by delta: Int) {
        let total = engine.pendingBytes.loadThenWrappingIncrement(by: delta, ordering: .relaxed) + delta
        if delta > 0, live.maxPendingBytes > 0, total > live.maxPendingBytes { enforcePendingLimit(total) }
    }

    /// Scans the open connections' incomplete frames (once a tick at most: those closed
    /// hold their bytes until reclaimed, and a later tick looks again) and closes the
    /// biggest holders until the open ones fit under max_pending_bytes.
    private func enforcePendingLimit(_ total: Int) {
        guard pendingScanTick != wheel.now else { return }
        pendingScanTick = wheel.now
        var held: [(bytes: Int, index: UInt32)] = []  // only under attack: the scan and its array
        var open = 0
        for index in table.usedRange {
            let s = table.slot(index)
            let bytes = s.pointee.receive.assembly.heldBytes
            guard bytes > 0, s.state == .open else { continue }
            held.append((bytes, index))
            open += bytes
        }
        held.sort { $0.bytes > $1.bytes }
        var closed = 0
        for victim in held where open > live.maxPendingBytes {
            let s = table.slot(victim.index)
            engine.requestClose(ConnectionID(index: victim.index, generation: s.generation.load(ordering: .acquiring)),
                                cause: .pendingBytes)
            open -= victim.bytes
            closed += 1
        }
        guard closed > 0 else { return }
        let why = "incomplete frames hold \(total) bytes, over max_pending_bytes \(live.maxPendingBytes)"
        engine.logger.warning("\(why): closed the \(closed) connections holding the most")
    }
}
