import CLinux
import Glibc

/// Monitor's side of UDP (docs/UDP.md): the bound sockets and the address table. Monitor owns both
/// because it already owns admission: a datagram from a new (address, port) is a new connection, put
/// through the same allow/deny lists, per-address limits and slot table as an accepted TCP client,
/// and an idle session's close is detached by Monitor, which is then the one to forget its address.
/// Each readable socket is read with recvmmsg, a batch of datagrams a call; every datagram is checked
/// (DatagramSplitter) before its session sees it, and every one dropped is counted by cause.
final class UDPReceiver {
    let sockets: [UDPSocket]
    private unowned(unsafe) let engine: Engine
    private unowned(unsafe) let udp: UDPTransport
    private let counters: UDPCounters
    private let tokens = UDPToken()
    private let maxFrame: Int
    /// Address and port to the session's id; Monitor's alone.
    private var addresses: [AddressKey: ConnectionID] = [:]

    /// Datagrams a recvmmsg call takes, and calls a socket gets per wake-up (the socket is watched
    /// level-triggered: what is left is reported at once).
    static let batch = 32
    static let callsPerWake = 8
    /// The largest UDP payload (IPv4: 65,535 less the IP and UDP headers): no datagram is truncated.
    static let bufferBytes = 65_536
    private let buffers: UnsafeMutableRawPointer
    private let messages: UnsafeMutablePointer<gw_mmsghdr>
    private let iovs: UnsafeMutablePointer<iovec>
    private let names: UnsafeMutablePointer<sockaddr_in6>

    init(engine: Engine, udp: UDPTransport, sockets: [UDPSocket]) {
        self.engine = engine
        self.udp = udp
        self.sockets = sockets
        counters = udp.counters
        maxFrame = engine.config.maxFrame
        addresses.reserveCapacity(min(engine.config.maxConnections, 1 << 16))
        // Pages are touched only as datagrams land in them.
        buffers = VirtualMemory.reserveBytes(Self.batch * Self.bufferBytes)
        messages = .allocate(capacity: Self.batch)
        messages.initialize(repeating: gw_mmsghdr(), count: Self.batch)
        iovs = .allocate(capacity: Self.batch)
        names = .allocate(capacity: Self.batch)
    }

    deinit {
        VirtualMemory.releaseBytes(buffers, Self.batch * Self.bufferBytes)
        messages.deallocate()
        iovs.deallocate()
        names.deallocate()
    }

    /// Reads socket `index` until it would block or its share of this wake-up is spent; `post` hands a
    /// session with new datagrams to Receive, `opened` a new one to Deal.
    func receive(_ index: Int, opened: (UnsafeMutablePointer<ConnectionSlot>, ConnectionID) -> Void,
                 post: (UnsafeMutablePointer<ConnectionSlot>, ConnectionID) -> Void) {
        let socket = sockets[index]
        for _ in 0..<Self.callsPerWake {
            for i in 0..<Self.batch {
                iovs[i] = iovec(iov_base: buffers + i * Self.bufferBytes, iov_len: Self.bufferBytes)
                messages[i].msg_hdr.msg_iov = iovs + i
                messages[i].msg_hdr.msg_iovlen = 1
                messages[i].msg_hdr.msg_name = UnsafeMutableRawPointer(names + i)
                messages[i].msg_hdr.msg_namelen = socklen_t(MemoryLayout<sockaddr_in6>.size)
                messages[i].msg_hdr.msg_flags = 0
            }
            let n = gw_recvmmsg(socket.fd, messages, UInt32(Self.batch), Int32(MSG_DONTWAIT))
            counters.add(.receiveCalls)
            if n < 0 {
                let e = gw_errno()
                if e == EINTR { continue }
                if e != EAGAIN && e != EWOULDBLOCK { counters.add(.receiveErrors) }
                return
            }
            for i in 0..<Int(n) {
                dispatch(socket.fd, i, opened: opened, post: post)
            }
            if Int(n) < Self.batch { return }
        }
    }

    private func dispatch(_ fd: Int32, _ i: Int, opened: (UnsafeMutablePointer<ConnectionSlot>, ConnectionID) -> Void,
                          post: (UnsafeMutablePointer<ConnectionSlot>, ConnectionID) -> Void) {
        counters.add(.datagramsIn)
        if messages[i].msg_hdr.msg_flags & Int32(MSG_TRUNC) != 0 {
            counters.add(.truncated)
            return
        }
        let bytes = UnsafeRawPointer(buffers + i * Self.bufferBytes)
        let length = Int(messages[i].msg_len)
        let start: Int
        var token: UInt64?
        switch DatagramSplitter.split(bytes, count: length, maxFrame: maxFrame) {
        case .garbage(let fault):
            switch fault {
            case .runt: counters.add(.runts)
            case .badLength: counters.add(.badLengths)
            case .partialFrame: counters.add(.partialFrames)
            }
            return
        case .frames(let s, let t):
            start = s
            token = t
        }
        var storage = sockaddr_storage()
        withUnsafeMutableBytes(of: &storage) {
            $0.copyMemory(from: UnsafeRawBufferPointer(start: names + i, count: Int(messages[i].msg_hdr.msg_namelen)))
        }
        let peer = Listener.peer(storage)
        if let token, token != tokens.of(peer) {
            counters.add(.badTokens)
            return
        }
        let key = AddressKey(peer)
        var id: ConnectionID
        var s: UnsafeMutablePointer<ConnectionSlot>
        if let known = addresses[key] {
            id = known
            s = engine.table.slot(id.index)
            guard s.holds(id), s.state == .open else {
                counters.add(.closingDrops)  // until Monitor detaches it; the next datagram opens a new session
                return
            }
        } else {
            guard let new = admit(peer, key, fd, i) else { return }
            (s, id) = new
            opened(s, id)
        }
        let u = udp.session(id.index)
        u.received.store(u.received.load(ordering: .relaxed) &+ UInt64(length), ordering: .relaxed)
        if token != nil, u.proven.load(ordering: .relaxed) == 0 {
            u.proven.store(1, ordering: .releasing)
            counters.add(.sessionsProven)
        }
        if start < length {
            guard udp.enqueue(id.index, bytes + start, count: length - start) else {
                counters.add(.queueFull)
                return
            }
            post(s, id)
        }
    }

    /// A new session: checked like an accepted connection, then open.
    private func admit(_ peer: PeerAddress, _ key: AddressKey, _ fd: Int32,
                       _ i: Int) -> (UnsafeMutablePointer<ConnectionSlot>, ConnectionID)? {
        if let refusal = engine.refusal(of: peer) {
            engine.counters.addClose(refusal)
            counters.add(.refused)
            return nil
        }
        let counted = engine.limits.countsConnections
        guard let index = engine.table.allocate() else {
            if counted { engine.limits.closed(peer) }
            engine.counters.addClose(.overCapacity)
            counters.add(.refused)
            return nil
        }
        let s = engine.table.slot(index)
        s.pointee.monitor = MonitorPart(fd: -1, peer: peer, transport: .udp)
        s.atomic(\.addressCounted).store(counted ? 1 : 0, ordering: .relaxed)
        s.atomic(\.transportReady).store(1, ordering: .relaxed)
        let u = udp.session(index)
        u.pointee.address = names[i]
        u.pointee.addressLength = messages[i].msg_hdr.msg_namelen
        u.pointee.socket = fd
        u.pointee.token = tokens.of(peer)
        let id = ConnectionID(index: index, generation: s.generation.load(ordering: .acquiring))
        s.accepted()
        addresses[key] = id
        engine.counters.add(.accepted)
        counters.add(.sessionsOpened)
        counters.add(.sessionsOpen)
        return (s, id)
    }

    /// Monitor, when it detaches a session: its address may open a new one.
    func forget(_ s: UnsafeMutablePointer<ConnectionSlot>, _ id: ConnectionID) {
        let key = AddressKey(s.pointee.monitor.peer)
        if addresses[key] == id { addresses[key] = nil }
        counters.subtract(.sessionsOpen)
    }

    /// A client's address and port as a table key.
    private struct AddressKey: Hashable {
        let high: UInt64
        let low: UInt64
        let portFamily: UInt32

        init(_ peer: PeerAddress) {
            (high, low) = peer.bytes
            portFamily = UInt32(peer.port) << 8 | UInt32(peer.family)
        }
    }
}
