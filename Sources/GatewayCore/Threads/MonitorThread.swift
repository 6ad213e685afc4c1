import Atomics
import CLinux
import CURCU
import Glibc
import Logging

/// Monitor: owns the poller, the listening socket and the clock. Accepts and
/// registers clients, turns readiness into connection ids for Receive and
/// Send, detaches connections whose close was requested, ticks every stage's
/// timer wheel, and runs the graceful stop. It never touches payload bytes.
final class MonitorThread: @unchecked Sendable {  // runs on its own thread; requests arrive through atomics
    unowned(unsafe) let engine: Engine
    let table: ConnectionTable
    let poller: Poller
    private(set) var listeners: [Listener]
    /// Listener i's poller token; connection tokens (packed ids) never come this high.
    private static func listenerToken(_ i: Int) -> UInt64 { UInt64.max - 1 - UInt64(i) }
    private static let lowestListenerToken = UInt64.max - 1 - UInt64(Gateway.maxListeners)
    /// UDP socket j's token, below the listeners'.
    private static func datagramToken(_ j: Int) -> UInt64 { lowestListenerToken - 1 - UInt64(j) }
    private static let lowestDatagramToken = lowestListenerToken - 1 - UInt64(Gateway.maxListeners)
    /// The UDP sockets and their address table (docs/UDP.md), nil without a udp:// listener.
    private let udp: UDPReceiver?

    /// The LiveSettings version accepts follow (open clients counted if it turned counting on).
    private var acceptVersion: UInt64 = 0
    /// The LiveSettings version whose link positions the connector has.
    private var liveVersion: UInt64 = 0
    private let tickNanoseconds: UInt64
    private var tick: UInt64 = 0
    private var nextTickAt: UInt64 = 0
    /// Bytes of this round's work that may still be done here (StageInbox.postOrRun).
    @exclusivity(unchecked) var inlineAllowance = 0
    /// Accepting stopped because the process is out of descriptors (retried next tick), or held for a hand-over.
    var acceptPaused = false
    /// A hot restart's hand-over (Handover/MonitorThread+Handover.swift): accepting held, connections coming in.
    let handover = MonitorHandover()
    var acceptHeld = false

    private let stopRequested = ManagedAtomic<Bool>(false)
    private let restartRequested = ManagedAtomic<Bool>(false)
    /// The hot restart's drain: the clients to ask to reconnect, in order, one every `noticeGap` ns
    /// from `noticesFrom`; at `restartEnds` the graceful stop ends whatever is still open.
    private var noticeQueue: [ConnectionID] = []
    private var noticesSent = 0
    private var noticesFrom: UInt64 = 0
    private var noticeGap: UInt64 = 0
    private var restartEnds: UInt64?
    private var drainDeadline: UInt64?
    private var forcedClose = false
    /// The poller's wait failed (EBADF, EINVAL): no readiness will ever come, so the gateway stops.
    private var pollerFailed = false
    /// Outbound links, when the gateway forwards upstream.
    private let connector: LinkConnector?

    /// Connections taken per listener wake-up: then the other events of the wake-up are served.
    private static let acceptBatch = 512

    /// Shared listeners of a forwarding gateway are watched only once a link is up, or at this deadline:
    /// until then the processes it shares them with (the one it takes over from, sibling workers) take
    /// the connections, rather than this one answering them `no_upstream`.
    private var holdAcceptsUntil: UInt64?
    private static let linkWaitNanoseconds: UInt64 = 10_000_000_000

    init(engine: Engine, listeners: [Listener], udp: UDPReceiver?, shared: Bool) throws {
        self.engine = engine
        table = engine.table
        poller = engine.poller
        let datagramSockets = udp?.sockets.count ?? 0
        precondition(listeners.count + datagramSockets > 0 && listeners.count <= Gateway.maxListeners
                     && datagramSockets <= Gateway.maxListeners, "1...64 listeners, 0...64 UDP sockets")
        self.listeners = listeners
        self.udp = udp
        tickNanoseconds = UInt64(engine.config.tickMilliseconds) * 1_000_000
        connector = engine.config.upstream.isEmpty ? nil : try LinkConnector(engine: engine)
        if shared, connector != nil {
            holdAcceptsUntil = MonotonicClock.nanoseconds() &+ Self.linkWaitNanoseconds
            acceptPaused = true
        } else {
            try watchListeners()
        }
    }

    /// Adds every listener to the poller, or none: a failure part way removes the ones added, so the
    /// next try starts clean (re-adding one already there would fail with EEXIST every time).
    private func watchListeners() throws(SocketError) {
        let fds = listeners.map(\.fd) + (udp?.sockets.map(\.fd) ?? [])
        for (i, fd) in fds.enumerated() {
            do {
                let token = i < listeners.count ? Self.listenerToken(i) : Self.datagramToken(i - listeners.count)
                try poller.addListener(fd: fd, token: token)
            } catch {
                for added in fds.prefix(i) { poller.remove(fd: added) }
                throw error
            }
        }
        engine.accepting.store(true, ordering: .releasing)
    }

    /// Any thread: begin the graceful stop.
    func requestStop() {
        stopRequested.store(true, ordering: .sequentiallyConsistent)
        poller.wake()
    }

    /// Any thread: hand over to a new process (which shares the listeners): stop accepting, ask
    /// every client to reconnect, spread over drain_timeout, then stop.
    func requestRestartDrain() {
        restartRequested.store(true, ordering: .sequentiallyConsistent)
        poller.wake()
    }

    func run() {
        gw_rcu_register_thread()
        defer { gw_rcu_unregister_thread() }
        nextTickAt = MonotonicClock.nanoseconds() &+ tickNanoseconds
        connector?.connectDue(now: MonotonicClock.nanoseconds())
        // Close requests ring the poller only while Monitor has announced it sleeps there.
        let bell = engine.closeRequests.doorbell
        while true {
            let now = MonotonicClock.nanoseconds()
            let timeout = nextTickAt > now ? Int32(min((nextTickAt - now + 999_999) / 1_000_000, 1000)) : 0
            let pending = bell.announceSleep { !engine.closeRequests.inbox.isEmpty }
            gw_rcu_thread_offline()
            if pollerFailed {
                usleep(1000)  // nothing to sleep in: the closes of the stop are looked for every millisecond
            } else {
                do {
                    _ = try poller.wait(timeoutMs: pending ? 0 : timeout)
                } catch {
                    fail(error)
                }
            }
            gw_rcu_thread_online()
            bell.announceAwake()
            inlineAllowance = engine.config.inlineBytes
            if !pollerFailed {
                poller.forEachReady { token, events in
                    if token > Self.lowestListenerToken {
                        acceptBatch(Int(UInt64.max - 1 - token))
                    } else if token > Self.lowestDatagramToken {
                        receiveDatagrams(Int(Self.lowestListenerToken - 1 - token))
                    } else {
                        dispatch(ConnectionID(packed: token), events)
                    }
                }
            }
            _ = engine.closeRequests.inbox.drain { detach(ConnectionID(packed: $0)) }
            serviceHandover()
            advanceClock()
            if restartRequested.load(ordering: .relaxed) { restartDrain() }
            if stopRequested.load(ordering: .relaxed), drain() { break }
            gw_rcu_quiescent_state()
        }
        engine.releaseStages()
    }

    /// The poller cannot wait any more: logged, recorded for `Gateway.failure`, and every connection
    /// closed at once (a graceful drain needs the readiness events that will not come).
    private func fail(_ error: SocketError) {
        pollerFailed = true
        engine.logger.critical("\(error): the poller is broken; closing every connection and stopping")
        engine.recordFailure("\(error)")
        stopRequested.store(true, ordering: .relaxed)
    }

    /// Readiness of one connection, handed to the stage that acts on it.
    private func dispatch(_ id: ConnectionID, _ events: PollEvents) {
        let s = table.slot(id.index)
        guard s.holds(id) else { return }
        if s.state == .connecting, let connector {
            guard connector.connectCompleted(id, s, now: MonotonicClock.nanoseconds()) else { return }
            // Deal sends HELLO; Receive reads whatever the upstream sends first.
            engine.deal.postOrRun(s, id, allowance: &inlineAllowance)
            engine.receive.postOrRun(s, id, allowance: &inlineAllowance)
            return
        }
        guard s.state == .open else { return }
        if events.contains(.readable) {
            if events.contains(.hangup) { s.endings.markHangup() }
            engine.receive.postOrRun(s, id, allowance: &inlineAllowance)
        }
        if events.contains(.writable), s.flag(\.writeBlocked) || table.sendRing(id.index).count > 0 {
            engine.send.postOrRun(s, id, allowance: &inlineAllowance)
        }
    }

    // MARK: accepting

    private func acceptBatch(_ i: Int) {
        guard i < listeners.count, !acceptPaused else { return }
        let listener = listeners[i]
        for _ in 0..<Self.acceptBatch {
            var addr = sockaddr_storage()
            var len = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let fd = withUnsafeMutablePointer(to: &addr) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { gw_accept4(listener.fd, $0, &len) }
            }
            if fd < 0 {
                let e = gw_errno()
                if e == EINTR || e == ECONNABORTED { continue }
                if e == EAGAIN || e == EWOULDBLOCK { return }
                engine.logger.error("accept: \(SocketError("accept4", e)); pausing accepts for one tick")
                for l in listeners { poller.remove(fd: l.fd) }
                for u in udp?.sockets ?? [] { poller.remove(fd: u.fd) }
                engine.accepting.store(false, ordering: .releasing)
                acceptPaused = true
                return
            }
            admit(fd, Listener.peer(addr), listener: i)
        }
    }

    private func admit(_ fd: Int32, _ peer: PeerAddress, listener: Int) {
        // Behind a balancer the address is the balancer's: the PROXY header's is checked by Receive.
        let proxied = engine.config.proxyProtocol
        if !proxied, let refusal = engine.refusal(of: peer) {
            close(fd)
            engine.counters.addClose(refusal)
            return
        }
        let counted = !proxied && engine.limits.countsConnections
        guard let index = table.allocate() else {
            close(fd)
            if counted { engine.limits.closed(peer) }
            engine.counters.addClose(.overCapacity)
            return
        }
        do {
            try SocketOptions.noDelay(fd)
        } catch {
            // Only latency depends on it: the connection is served anyway.
            engine.logger.warning("accepted \(peer): \(error)")
        }
        let s = table.slot(index)
        let address = listeners[listener].address
        let transport: TransportKind = address.webSocketPath != nil ? (address.tls ? .webSocketTLS : .webSocket)
            : address.tls ? .tls : .plain
        // An aggregation server's listener takes links from lower nodes, never clients.
        let kind: SlotKind = engine.config.role == .aggregation ? .downlink : .client
        s.pointee.monitor = MonitorPart(fd: fd, peer: peer, kind: kind, transport: transport,
                                        listenerIndex: UInt8(truncatingIfNeeded: listener))
        s.pointee.receive.awaitingProxy = proxied
        s.atomic(\.addressCounted).store(counted ? 1 : 0, ordering: .relaxed)
        let id = ConnectionID(index: index, generation: s.generation.load(ordering: .acquiring))
        s.accepted()
        do {
            try poller.addConnection(fd: fd, token: id.packed)
        } catch {
            engine.logger.error("registering \(s.pointee.monitor.peer): \(error)")
            s.withdrawn()
            close(fd)
            if counted { engine.limits.closed(peer) }
            table.release(index)
            return
        }
        engine.counters.add(.accepted)
        // The handler's open callback, then the idle timer and any bytes that came before registration.
        engine.deal.postOrRun(s, id, allowance: &inlineAllowance)
        engine.receive.postOrRun(s, id, allowance: &inlineAllowance)
    }

    /// A UDP socket is readable: its datagrams go to their sessions (opened here when new), and each
    /// session with new datagrams to Receive.
    private func receiveDatagrams(_ j: Int) {
        guard let udp, j < udp.sockets.count, !acceptPaused else { return }
        udp.receive(j, opened: { s, id in
            engine.deal.postOrRun(s, id, allowance: &inlineAllowance)
        }, post: { s, id in
            engine.receive.postOrRun(s, id, allowance: &inlineAllowance)
        })
    }

    // MARK: closing

    /// A close was requested: stop watching the socket and shut it down (the
    /// descriptor itself is closed only after a grace period), then let Deal
    /// tell the handler.
    private func detach(_ id: ConnectionID) {
        let s = table.slot(id.index)
        guard s.holds(id) else { return }
        engine.closeRequests.openGate(s)
        guard s.state == .closing else { return }
        if s.pointee.monitor.transport == TransportKind.udp.rawValue {
            udp?.forget(s, id)  // no descriptor of its own: the shared socket stays
        } else {
            if !poller.remove(fd: s.pointee.monitor.fd), !pollerFailed {
                engine.logger.error("detaching \(id): it was not registered with the poller")
            }
            // A connection handed over lives on in the new process: its socket is left as it is.
            if s.endings.closeCause != .handedOver { shutdown(s.pointee.monitor.fd, Int32(SHUT_RDWR)) }
        }
        if s.atomic(\.addressCounted).load(ordering: .acquiring) == 1 { engine.limits.closed(s.pointee.monitor.peer) }
        if s.pointee.monitor.kind == SlotKind.uplink.rawValue, let connector {
            let cause = s.endings.closeCause ?? .ioError
            connector.closed(s, now: MonotonicClock.nanoseconds(), cause: cause)
        }
        s.detached()
        engine.deal.postOrRun(s, id, allowance: &inlineAllowance)
    }

    // MARK: clock

    private func advanceClock() {
        let now = MonotonicClock.nanoseconds()
        guard now >= nextTickAt else { return }
        tick &+= 1 &+ (now - nextTickAt) / tickNanoseconds
        nextTickAt = now &+ tickNanoseconds
        for stage in engine.stages { stage.advanceTick(to: tick) }
        if let connector { followUpstream(connector) }
        engine.tls?.tick()
        connector?.connectDue(now: now)
        let version = engine.live.currentVersion
        if version != acceptVersion {
            if engine.countOpenAddresses.exchange(false, ordering: .acquiring) { countOpenAddresses(now: now) }
            acceptVersion = version
            engine.acceptTakenVersion.store(version, ordering: .releasing)
        }
        if engine.limits.countsConnections { engine.limits.sweep(now: now) }
        if acceptPaused, !acceptHeld, linkedOrDue(now) {
            do {
                try watchListeners()
                acceptPaused = false
            } catch {
                engine.logger.error("accept still paused: \(error); retrying next tick")
            }
        }
    }

    private func linkedOrDue(_ now: UInt64) -> Bool {
        guard let until = holdAcceptsUntil else { return true }
        let linked = engine.counters.value(.linksUp) > 0
        if !linked { guard now >= until else { return false } }
        holdAcceptsUntil = nil
        if linked {
            engine.logger.info("a link is up: accepting on the shared listeners")
        } else {
            engine.logger.warning("no link up in \(Self.linkWaitNanoseconds / 1_000_000_000) s: accepting anyway")
        }
        return true
    }

    /// A reload turned max_conns_per_ip or conn_rate_per_ip on: the clients already open count against
    /// their addresses (Monitor releases them at detach, like those counted at accept). Behind PROXY
    /// protocol, Receive counts the address a header names, so only connections accepted later count.
    private func countOpenAddresses(now: UInt64) {
        guard !engine.config.proxyProtocol else { return }
        forEachOpen { id in
            let s = table.slot(id.index)
            guard s.pointee.monitor.isClient, s.atomic(\.addressCounted).load(ordering: .relaxed) == 0
            else { return }
            s.atomic(\.addressCounted).store(1, ordering: .releasing)
            engine.limits.count(s.pointee.monitor.peer, now: now)
        }
    }

    /// A reload's upstream list, once Deal has taken it (so Deal knows every position Monitor connects).
    private func followUpstream(_ connector: LinkConnector) {
        guard liveVersion != engine.live.currentVersion,
              engine.deal.takenLiveVersion.load(ordering: .acquiring) == engine.live.currentVersion else { return }
        liveVersion = engine.live.currentVersion
        do {
            try connector.retarget(engine.live.current.linkTargets)
        } catch {
            engine.logger.error("reload: \(error); the links stay as they were")
        }
    }

    // MARK: graceful stop

    /// Stops accepting, lets every connection send the replies already
    /// produced, forces the stragglers closed at the deadline; true once no
    /// connection is left (or a second past the deadline, whatever remains).
    /// After a hot restart's drain window only a second is left for that; after a poller failure, none.
    private func drain() -> Bool {
        let now = MonotonicClock.nanoseconds()
        if drainDeadline == nil {
            let seconds = pollerFailed ? 0 : restartEnds == nil ? UInt64(engine.live.current.drainTimeout) : 1
            drainDeadline = now &+ seconds * 1_000_000_000
            stopAccepting()
            engine.beginStopping()
            forEachOpen { id in
                let s = table.slot(id.index)
                if engine.endInput(s, cause: .shutdown) { engine.deal.input.post(s, id) }
            }
        }
        if table.inUse == 0 { return true }
        if now >= drainDeadline!, !forcedClose {
            forcedClose = true
            forEachOpen { engine.requestClose($0, cause: .shutdown) }
        }
        return now >= drainDeadline! &+ 1_000_000_000
    }

    /// The new process holds the listeners too: closing them here refuses no one.
    private func stopAccepting() {
        engine.accepting.store(false, ordering: .releasing)
        for l in listeners {
            poller.remove(fd: l.fd)
            close(l.fd)
        }
        listeners = []
        // Sessions still open finish their replies on the UDP sockets (closed by Gateway.stop); new
        // datagrams are not read.
        for u in udp?.sockets ?? [] { poller.remove(fd: u.fd) }
    }

    /// The hot restart's drain, each loop: clients are asked to reconnect evenly over the first 90% of
    /// drain_timeout (the last tenth lets the last ones finish), then the graceful stop ends the rest.
    private func restartDrain() {
        let now = MonotonicClock.nanoseconds()
        guard let ends = restartEnds else {
            stopAccepting()
            let drainTimeout = engine.live.current.drainTimeout
            let window = UInt64(drainTimeout) * 1_000_000_000
            restartEnds = now &+ window
            engine.beginRestartDrain(deadline: now &+ window)
            forEachOpen { id in
                if table.slot(id.index).pointee.monitor.isClient { noticeQueue.append(id) }
            }
            noticesFrom = now
            noticeGap = noticeQueue.isEmpty ? 0 : window / 10 * 9 / UInt64(noticeQueue.count)
            let spread = Double(drainTimeout) * 0.9
            engine.logger.notice("draining for a restart: \(noticeQueue.count) clients asked to reconnect over \(spread) s")
            return restartDrain()
        }
        while noticesSent < noticeQueue.count, now >= noticesFrom &+ UInt64(noticesSent) &* noticeGap {
            let id = noticeQueue[noticesSent]
            noticesSent += 1
            let s = table.slot(id.index)
            guard s.holds(id), s.state == .open else { continue }
            s.atomic(\.reconnectNotice).store(1, ordering: .releasing)
            engine.deal.postOrRun(s, id, allowance: &inlineAllowance)
        }
        if now >= ends || table.inUse == 0 { stopRequested.store(true, ordering: .relaxed) }
    }

    private func forEachOpen(_ body: (ConnectionID) -> Void) {
        for index in table.usedRange {
            let s = table.slot(index)
            if s.state == .open { body(ConnectionID(index: index, generation: s.generation.load(ordering: .acquiring))) }
        }
    }
}
