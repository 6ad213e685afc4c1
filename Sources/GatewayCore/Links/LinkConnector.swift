import CLinux
import Glibc
import Logging

/// Monitor's: the outbound links (upstream servers x links per server), as
/// muduo's Connector: connect without blocking, report the outcome, and after a
/// failure or a close retry with exponential back-off and jitter, capped at
/// `link_retry_max_ms`. A connected link is a slot like a client's; Deal speaks
/// the link protocol on it.
final class LinkConnector {
    private enum State {
        case waiting(until: UInt64)
        case connecting(ConnectionID)
        case open(ConnectionID)
        /// A reload removed its server: never connected again.
        case retired
    }

    private unowned(unsafe) let engine: Engine
    /// Per link position (LiveSettings.linkTargets): where it connects, or nil once retired.
    private var targets: [(address: sockaddr_in, name: String, tls: Bool)?] = []
    private var states: [State] = []
    private var backoff: [UInt64] = []
    /// Down was logged since the link last connected: retries stay quiet.
    private var reportedDown: [Bool] = []
    private let baseBackoff: UInt64
    private let maxBackoff: UInt64
    private var random = SystemRandomNumberGenerator()

    init(engine: Engine) throws(ConfigError) {
        self.engine = engine
        maxBackoff = UInt64(engine.config.linkRetryMaxMilliseconds) * 1_000_000
        baseBackoff = max(maxBackoff / 16, 1_000_000)
        try retarget(engine.live.current.linkTargets)
    }

    /// The link positions after a reload (only once Deal has taken them): new positions connect at
    /// once, removed ones close their link (the clients on it move at their next frame).
    func retarget(_ new: [GatewayConfig.Upstream?]) throws(ConfigError) {
        for position in new.indices {
            if position < targets.count {
                if new[position] == nil, targets[position] != nil { retire(position) }
                continue
            }
            guard let upstream = new[position] else { continue }
            var addr = sockaddr_in()
            addr.sin_family = sa_family_t(AF_INET)
            addr.sin_port = in_port_t(UInt16(upstream.port).bigEndian)
            guard inet_pton(AF_INET, upstream.host, &addr.sin_addr) == 1 else {
                throw ConfigError(key: "upstream", value: "\(upstream)", allowed: "IPv4 HOST:PORT")
            }
            targets.append((addr, "\(upstream)", upstream.tls))
            states.append(.waiting(until: 0))
            backoff.append(baseBackoff)
            reportedDown.append(false)
        }
    }

    private func retire(_ position: Int) {
        engine.logger.notice("\(name(position)): its server was removed from upstream; closing it")
        targets[position] = nil
        let state = states[position]
        states[position] = .retired
        switch state {
        case .open(let id): engine.requestClose(id, cause: .upstream)
        case .connecting(let id): abandon(id, engine.table.slot(id.index))
        case .waiting, .retired: break
        }
    }

    var count: Int { states.count }

    func name(_ position: Int) -> String { "link \(position) to \(targets[position]?.name ?? "a removed server")" }

    /// Each tick: links whose back-off is over connect again (not while stopping).
    func connectDue(now: UInt64) {
        guard !engine.isStopping else { return }
        for position in states.indices {
            if case .waiting(let until) = states[position], now >= until { connect(position, now: now) }
        }
    }

    private func connect(_ position: Int, now: UInt64) {
        guard let target = targets[position] else { return }
        var address = target.address
        guard let index = engine.table.allocate() else {
            retry(position, now: now, why: "no free slot (max_connections)")
            return
        }
        let type = Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue)
        let fd = socket(AF_INET, type, 0)
        guard fd >= 0 else {
            engine.table.release(index)
            retry(position, now: now, why: "\(SocketError("socket", gw_errno()))")
            return
        }
        do {
            try SocketOptions.noDelay(fd)
        } catch {
            engine.logger.warning("\(name(position)): \(error)")
        }
        let s = engine.table.slot(index)
        // Receive runs the TLS handshake once connected (the client speaks first); Send waits for it.
        s.pointee.monitor = MonitorPart(fd: fd, peer: PeerAddress(ipv4: address.sin_addr.s_addr,
                                                                  port: UInt16(bigEndian: address.sin_port)),
                                        kind: .uplink, linkPosition: UInt16(position),
                                        transport: target.tls ? .tlsClient : .plain)
        let id = ConnectionID(index: index, generation: s.generation.load(ordering: .acquiring))
        s.beginConnecting()
        states[position] = .connecting(id)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        let e = rc == 0 ? 0 : gw_errno()
        guard rc == 0 || e == EINPROGRESS else { return fail(id, s, now: now, why: "\(SocketError("connect", e))") }
        do {
            try engine.poller.addConnection(fd: fd, token: id.packed)
        } catch {
            return fail(id, s, now: now, why: "\(error)")
        }
        engine.poller.wantWritable(id.packed)  // the connect completes when the socket turns writable
    }

    /// Monitor saw a connecting link's socket writable (or failed): the connect's outcome.
    func connectCompleted(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>, now: UInt64) -> Bool {
        var error: Int32 = 0
        var len = socklen_t(MemoryLayout<Int32>.size)
        if getsockopt(s.pointee.monitor.fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0 { error = gw_errno() }
        guard error == 0 else {
            fail(id, s, now: now, why: "\(SocketError("connect", error))")
            return false
        }
        let position = Int(s.pointee.monitor.linkPosition)
        states[position] = .open(id)
        s.connected()
        engine.logger.debug("\(name(position)): connected")
        return true
    }

    /// A connected link closed (Monitor detached it): reconnect after the back-off.
    /// A link that was open (over TLS: whose handshake finished) starts again from the shortest
    /// back-off and is logged down again; one whose handshake failed backs off further, quietly.
    func closed(_ s: UnsafeMutablePointer<ConnectionSlot>, now: UInt64, cause: CloseCause) {
        let position = Int(s.pointee.monitor.linkPosition)
        guard case .open = states[position] else { return }
        if s.pointee.monitor.transport == TransportKind.plain.rawValue || s.transportIsReady {
            backoff[position] = baseBackoff
            reportedDown[position] = false
        }
        retry(position, now: now, why: "closed (\(cause))")
    }

    /// The connect failed: the slot, seen by no other thread, is reset and freed here.
    private func fail(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>, now: UInt64, why: String) {
        let position = Int(s.pointee.monitor.linkPosition)
        abandon(id, s)
        retry(position, now: now, why: why)
    }

    private func abandon(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) {
        engine.poller.remove(fd: s.pointee.monitor.fd)  // false when the connect failed before registration
        engine.reclaim(s)
    }

    private func retry(_ position: Int, now: UInt64, why: String) {
        if case .retired = states[position] { return }
        if !reportedDown[position] {
            reportedDown[position] = true
            engine.logger.warning("\(name(position)) down: \(why); retrying every \(maxBackoff / 1_000_000) ms at most")
        }
        let delay = backoff[position]
        backoff[position] = min(delay * 2, maxBackoff)
        // Jitter of +-25% keeps links of many nodes from reconnecting in step after an upstream restart.
        let jitter = delay / 2 > 0 ? UInt64.random(in: 0..<(delay / 2), using: &random) : 0
        states[position] = .waiting(until: now &+ delay &- delay / 4 &+ jitter)
    }
}
