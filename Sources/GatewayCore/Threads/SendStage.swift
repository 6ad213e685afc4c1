import Atomics
import CLinux
import Glibc

/// Send: gathers every reply waiting on a connection's send ring into one
/// writev (up to IOV_MAX iovecs), keeps the position of a partial write, and
/// leaves the rest to Monitor's writability event. Owns the write-stall wheel.
final class SendStage: StageWorker, @unchecked Sendable {  // runs on its own thread; shared state is in atomics
    let input: StageInbox
    unowned(unsafe) let engine: Engine
    let table: ConnectionTable
    private let pool: ChunkPool
    private let wheel: TimerWheel
    /// write_stall_timeout (a reload may change it, taken at the next tick).
    @exclusivity(unchecked) private var live: LiveSettings
    @exclusivity(unchecked) private var liveVersion: UInt64 = 0
    private let iov: UnsafeMutablePointer<iovec>
    private let iovMax: Int
    @exclusivity(unchecked) var inlineAllowance = 0
    @exclusivity(unchecked) private(set) var bytesMoved = 0
    /// Strong, as Receive's: borrowed for each call, where an unowned copy is retained and released.
    private let poller: Poller

    init(engine: Engine) {
        self.engine = engine
        table = engine.table
        pool = engine.pool
        poller = engine.poller
        wheel = TimerWheel(nodes: table.timerNodes(\.sendTimer))
        live = engine.live.current
        iovMax = Int(gw_iov_max())
        iov = .allocate(capacity: iovMax)
        input = StageInbox(name: "send", gate: \.sendGate, capacity: engine.inboxCapacity)
    }

    deinit { iov.deallocate() }

    func service(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) {
        if holdsForHandover(id, s) { return }
        let ring = table.sendRing(id.index)
        guard flush(id, s, ring) else { return }
        // Read before the ring: Deal moves its backlog onto the ring before it clears the flag.
        let backlogged = s.flag(\.backlogged)
        if ring.count == 0, s.atomic(\.transportOutput).load(ordering: .acquiring) == 0 {
            if s.flag(\.writeBlocked) {
                s.atomic(\.writeBlocked).store(0, ordering: .sequentiallyConsistent)
                wheel.cancel(id.index)
                input.armedTimers.store(wheel.count, ordering: .relaxed)
            }
            if !backlogged, let cause = s.endings.flushThenClose {
                finishGracefully(id, s, cause: cause)
                return
            }
        }
        // Pairs with Deal's store-then-check (waitForSendRoom, awaitSendRoom): both sides fence.
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        if s.flag(\.dealPaused), s.atomic(\.dealPaused).exchange(0, ordering: .acquiringAndReleasing) == 1 {
            engine.deal.input.post(s, id)
        }
    }

    /// Every reply is in the kernel. After the client's end of stream the
    /// connection closes now; otherwise our side is shut for writing and Receive
    /// lingers, discarding input until the client closes, because closing with
    /// unread input would reset the connection and lose replies still in flight.
    private func finishGracefully(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>, cause: CloseCause) {
        // A UDP session has no stream to shut: once its replies are out, it is done.
        if s.endings.inputEnded == .peer || s.pointee.monitor.transport == TransportKind.udp.rawValue {
            engine.requestClose(id, cause: cause)
            return
        }
        guard s.endings.beginLingering(cause) else { return }
        if s.pointee.monitor.transport != TransportKind.plain.rawValue {
            engine.transport(of: s).finish(s, cause: cause)
        }
        shutdown(s.pointee.monitor.fd, Int32(SHUT_WR))
        engine.receive.input.post(s, id)
    }

    func batchDone() {
        engine.udp?.batch.flush()  // the datagrams packed for every UDP session this batch, in one sendmmsg
        poller.applyInterest()
    }

    /// Writes until the ring is empty or the socket is full; false if the connection failed.
    func flush(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>, _ ring: FrameRing) -> Bool {
        let plain = s.pointee.monitor.transport == TransportKind.plain.rawValue
        // Until its opening is done Receive alone has the transport; it posts here when done.
        if !plain, !s.transportIsReady { return true }
        while true {
            let count = min(ring.count, iovMax)
            if count == 0 {
                if !plain, s.flag(\.transportOutput) { return flushTransportOutput(id, s) }
                return true
            }
            var offset = Int(s.pointee.send.writeOffset)
            var total = 0
            for i in 0..<count {
                let d = ring.peek(i).pointee
                let skip = i == 0 ? offset : 0
                iov[i] = iovec(iov_base: d.start + skip, iov_len: Int(d.length) - skip)
                total += Int(d.length) - skip
            }
            let n: Int
            if plain {
                n = writev(s.pointee.monitor.fd, iov, Int32(count))
            } else {
                switch engine.transport(of: s).write(s, iov, count: count) {
                case .wrote(let taken): n = taken
                case .failed(let cause):
                    engine.requestClose(id, cause: cause)
                    return false
                }
            }
            if n < 0 {
                let e = gw_errno()
                if e == EINTR { continue }
                if e == EAGAIN || e == EWOULDBLOCK {
                    markBlocked(id, s, progressed: false)
                    return true
                }
                engine.requestClose(id, cause: e == EPIPE || e == ECONNRESET ? .peer : .ioError)
                return false
            }
            engine.counters.add(.bytesOut, UInt64(n))
            s.sentBytes.store(s.sentBytes.load(ordering: .relaxed) &+ UInt64(n), ordering: .relaxed)
            bytesMoved &+= n
            var left = n + offset
            var done = 0
            while done < count {
                let d = ring.peek(done).pointee
                if left < Int(d.length) { break }
                left -= Int(d.length)
                pool.release(d.chunk)
                done += 1
            }
            offset = left
            ring.pop(done)
            s.pointee.send.writeOffset = UInt32(offset)
            if n < total {
                markBlocked(id, s, progressed: n > 0)
                return true
            }
        }
    }

    /// The transport's own output (a pong) with no frames queued; false if the connection failed.
    private func flushTransportOutput(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) -> Bool {
        switch engine.transport(of: s).write(s, iov, count: 0) {
        case .wrote:
            if s.flag(\.transportOutput) { markBlocked(id, s, progressed: false) }
            return true
        case .failed(let cause):
            engine.requestClose(id, cause: cause)
            return false
        }
    }

    /// The socket is full: Monitor reports when it drains. The stall timer bounds
    /// how long the client may go without taking any bytes; progress restarts it.
    private func markBlocked(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>, progressed: Bool) {
        let newly = s.atomic(\.writeBlocked).exchange(1, ordering: .sequentiallyConsistent) == 0
        if newly || progressed {
            // The wheel sleeps through ticks while it holds no timers: bring it up to date first.
            if wheel.now != input.currentTick { advanceTimers(to: input.currentTick) }
            s.pointee.sendTimerGeneration = id.generation
            wheel.schedule(id.index, after: live.stallTicks)
            input.armedTimers.store(wheel.count, ordering: .relaxed)
        }
        poller.wantWritable(id.packed)
    }

    func advanceTimers(to tick: UInt64) {
        if let newer = engine.live.newer(than: &liveVersion) { live = newer }
        wheel.advance(to: tick) { index in
            let s = table.slot(index)
            let gen = s.generation.load(ordering: .acquiring)
            guard s.pointee.sendTimerGeneration == gen, s.state == .open, s.flag(\.writeBlocked) else { return }
            engine.requestClose(ConnectionID(index: index, generation: gen), cause: .slowConsumer)
        }
        input.armedTimers.store(wheel.count, ordering: .relaxed)
    }
}
