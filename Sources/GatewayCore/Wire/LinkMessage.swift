import Glibc

/// A session id (docs/LINK.md): the access node's id and the client
/// connection's slot and generation there. Names one client in the whole tree.
public struct SessionID: Hashable, Sendable, CustomStringConvertible {
    public static let size = 12
    public var node: UInt32
    public var connection: ConnectionID

    public init(node: UInt32, connection: ConnectionID) {
        self.node = node
        self.connection = connection
    }

    @inlinable
    public init(decoding p: UnsafeRawPointer) {
        node = FrameHeader.loadU32(p, 0)
        connection = ConnectionID(index: FrameHeader.loadU32(p, 4), generation: FrameHeader.loadU32(p, 8))
    }

    @inlinable
    public func encode(into p: UnsafeMutableRawPointer) {
        p.storeBytes(of: node.bigEndian, toByteOffset: 0, as: UInt32.self)
        p.storeBytes(of: connection.index.bigEndian, toByteOffset: 4, as: UInt32.self)
        p.storeBytes(of: connection.generation.bigEndian, toByteOffset: 8, as: UInt32.self)
    }

    public var description: String { "\(node)/\(connection)" }
}

/// The role a node announces in HELLO.
public enum NodeRole: UInt8, Sendable, CaseIterable {
    case access = 1, aggregation = 2, core = 3
}

/// A client's address as OPENED carries it: IPv4 in the first four bytes, or IPv6.
public struct PeerAddress: Equatable, Sendable {
    public var family: UInt8  // 4 or 6
    public var port: UInt16
    /// 16 bytes in network order; IPv4 uses the first four.
    public var bytes: (UInt64, UInt64)

    public init(ipv4 address: UInt32, port: UInt16) {
        family = 4
        self.port = port
        var b: (UInt64, UInt64) = (0, 0)
        withUnsafeMutableBytes(of: &b) { $0.storeBytes(of: address, as: UInt32.self) }  // already network order
        bytes = b
    }

    public init(family: UInt8, port: UInt16, bytes: (UInt64, UInt64)) {
        self.family = family
        self.port = port
        self.bytes = bytes
    }

    public static func == (a: PeerAddress, b: PeerAddress) -> Bool {
        a.family == b.family && a.port == b.port && a.bytes == b.bytes
    }
}

extension PeerAddress: CustomStringConvertible {
    /// The IPv4 address in network order (family 4).
    public var ipv4: UInt32 { withUnsafeBytes(of: bytes) { $0.load(as: UInt32.self) } }

    /// The address alone: "10.0.0.1" or "2001:db8::1".
    public var host: String {
        withUnsafeBytes(of: bytes) { raw in
            if family == 4 { return "\(raw[0]).\(raw[1]).\(raw[2]).\(raw[3])" }
            var text = [CChar](repeating: 0, count: 46)  // INET6_ADDRSTRLEN
            _ = inet_ntop(AF_INET6, raw.baseAddress, &text, socklen_t(text.count))
            return text.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        }
    }

    /// "10.0.0.1:4000" or "[2001:db8::1]:4000", for logs.
    public var description: String { family == 4 ? "\(host):\(port)" : "[\(host)]:\(port)" }
}

/// The link messages of docs/LINK.md, decoded from one whole frame.
public enum LinkMessage: Equatable {
    public static let version: UInt16 = 2
    /// Bytes a DATA message adds around the client frame.
    public static let dataOverhead = FrameHeader.size + SessionID.size
    /// The most any message adds to a client frame (PUSH): a link frame may be this much
    /// longer than max_frame, so that a client frame of exactly max_frame passes every tier.
    public static let maxOverhead = pushOverhead

    public enum Command {
        public static let hello: UInt16 = 0xFF10
        public static let heartbeat: UInt16 = 0xFF11
        public static let opened: UInt16 = 0xFF12
        public static let data: UInt16 = 0xFF13
        public static let closed: UInt16 = 0xFF14
        public static let linkDown: UInt16 = 0xFF15
        public static let bind: UInt16 = 0xFF16
        public static let unbind: UInt16 = 0xFF17
        public static let join: UInt16 = 0xFF18
        public static let leave: UInt16 = 0xFF19
        public static let push: UInt16 = 0xFF1A
        public static let kick: UInt16 = 0xFF1B
        public static let presenceQuery: UInt16 = 0xFF1C
        public static let presence: UInt16 = 0xFF1D
        public static let pushDropped: UInt16 = 0xFF1E
        public static let move: UInt16 = 0xFF1F
    }

    /// HELLO's `features` (byte 21), bits a node sets for what it does beyond version 2.
    public enum Feature {
        /// It answers MOVE (a core): an access node moves its sessions to its successor at a hot restart.
        public static let moves: UInt8 = 1
    }

    /// MOVE's kinds (docs/LINK.md): a session moving between two processes of one access node.
    public enum MoveKind: UInt8, Sendable {
        /// Up, from the old process: it sends nothing more for the session on this link.
        case moving = 1
        /// Down, from the core: everything it sends for the session on this link is sent.
        case ready = 2
        /// Up, from the new process: the session is now on this link, with its uid, rooms and presence.
        case moved = 3
    }

    /// Bytes a PUSH message adds before the client frame.
    public static let pushOverhead = 38

    /// Whom a tree-wide message names.
    public enum Scope: UInt8, Sendable, CaseIterable {
        case uid = 1, room = 2, node = 3, all = 4
    }

    /// The common part of PUSH, KICK, PRESENCE_QUERY and PRESENCE: the sessions
    /// named, and (origin, seq), which every server passes on once.
    public struct TreeWide: Equatable, Sendable {
        public var scope: Scope
        public var target: UInt32
        public var origin: UInt32
        public var seq: UInt64

        public init(scope: Scope, target: UInt32, origin: UInt32, seq: UInt64) {
            self.scope = scope
            self.target = target
            self.origin = origin
            self.seq = seq
        }

        static func decode(_ body: UnsafeRawPointer) -> TreeWide? {
            guard let scope = Scope(rawValue: body.load(as: UInt8.self)) else { return nil }
            return TreeWide(scope: scope, target: FrameHeader.loadU32(body, 4), origin: FrameHeader.loadU32(body, 8),
                            seq: UInt64(bigEndian: body.loadUnaligned(fromByteOffset: 12, as: UInt64.self)))
        }

        func encode(into body: UnsafeMutableRawPointer) {
            body.storeBytes(of: scope.rawValue, as: UInt8.self)
            body.storeBytes(of: target.bigEndian, toByteOffset: 4, as: UInt32.self)
            body.storeBytes(of: origin.bigEndian, toByteOffset: 8, as: UInt32.self)
            body.storeBytes(of: seq.bigEndian, toByteOffset: 12, as: UInt64.self)
        }
    }

    /// HELLO's status from the upper side.
    public enum HelloStatus: UInt32, Sendable {
        case accepted = 0, unsupportedVersion = 1, roleRefused = 2, notReady = 3
    }

    public struct Hello: Equatable, Sendable {
        public var status: UInt32
        public var version: UInt16
        public var role: UInt8
        public var node: UInt32
        public var link: UInt16
        public var heartbeatMilliseconds: UInt32
        /// The largest client frame the sender takes (its max_frame): a peer never sends it a
        /// DATA or PUSH carrying a longer one.
        public var maxFrame: UInt32
        /// What may wait for one client's socket at the sender (max_queued_bytes, saturated at
        /// 2^32 - 1); 0 from a core. A core can size its bursts to it.
        public var maxQueuedBytes: UInt32
        /// `Feature` bits; 0 from a peer that predates them (the byte was reserved).
        public var features: UInt8 = 0

        public init(status: UInt32 = 0, version: UInt16 = LinkMessage.version, role: NodeRole, node: UInt32,
                    link: UInt16, heartbeatMilliseconds: UInt32, maxFrame: UInt32 = 1 << 20, maxQueuedBytes: UInt32 = 0,
                    features: UInt8 = 0) {
            self.status = status
            self.version = version
            self.role = role.rawValue
            self.node = node
            self.link = link
            self.heartbeatMilliseconds = heartbeatMilliseconds
            self.maxFrame = maxFrame
            self.maxQueuedBytes = maxQueuedBytes
            self.features = features
        }
    }

    case hello(Hello)
    case heartbeat
    /// `transport`: how the client reached the access node (`OpenedTransport`), byte 33.
    case opened(SessionID, link: UInt16, peer: PeerAddress, transport: UInt8 = 0)
    /// The client frame starts `dataOverhead` bytes into the link frame.
    case data(SessionID, clientFrameLength: UInt32)
    case closed(SessionID, cause: UInt8)
    case linkDown(node: UInt32, link: UInt16)
    case bind(SessionID, uid: UInt32)
    case unbind(SessionID)
    case join(SessionID, room: UInt32)
    case leave(SessionID, room: UInt32)
    /// The client frame starts `pushOverhead` bytes into the link frame.
    case push(TreeWide, clientFrameLength: UInt32)
    case kick(TreeWide)
    case presenceQuery(TreeWide)
    case presence(TreeWide, node: UInt32, count: UInt32)
    /// Pushes to a session dropped by push_overflow since the last such notice.
    case pushDropped(SessionID, count: UInt32)
    /// A session moving to another process of its access node; `link`, `peer` and `transport`
    /// are what OPENED would carry (MOVED), 0 otherwise.
    case move(SessionID, MoveKind, link: UInt16, peer: PeerAddress, transport: UInt8)

    /// Why a frame is not a valid link message: the link is closed for it.
    public enum Malformed: Error, Equatable, CustomStringConvertible {
        case unknownCommand(UInt16)
        case badLength(cmd: UInt16, length: UInt32)
        case badInnerLength(outer: UInt32, inner: UInt32)
        case badScope(UInt8)
        case badMoveKind(UInt8)

        public var description: String {
            switch self {
            case .unknownCommand(let cmd): "unknown link command 0x\(String(cmd, radix: 16))"
            case .badLength(let cmd, let length): "link command 0x\(String(cmd, radix: 16)) with length \(length)"
            case .badInnerLength(let outer, let inner): "DATA of length \(outer) carries a frame of length \(inner)"
            case .badScope(let scope): "scope \(scope) (allowed 1...4)"
            case .badMoveKind(let kind): "MOVE kind \(kind) (allowed 1...3)"
            }
        }
    }

    static let fixedLengths: [UInt16: UInt32] = [
        Command.hello: 40, Command.heartbeat: 18, Command.opened: 52, Command.closed: 34, Command.linkDown: 24,
        Command.bind: 34, Command.unbind: 30, Command.join: 34, Command.leave: 34, Command.kick: 38,
        Command.presenceQuery: 38, Command.presence: 46, Command.pushDropped: 34, Command.move: 54,
    ]

    /// Decodes one whole frame of `length` bytes (its length field already
    /// checked against the link limit by the cutter). `maxFrame` bounds DATA's inner frame.
    public static func decode(_ p: UnsafeRawPointer, maxFrame: Int) -> Result<LinkMessage, Malformed> {
        let header = FrameHeader(decoding: p)
        let length = header.length
        /// DATA and PUSH carry a whole client frame after `overhead` bytes, filling the rest of the link frame.
        func innerFrame(after overhead: Int) -> Result<UInt32, Malformed> {
            guard length >= UInt32(overhead + FrameHeader.size) else {
                return .failure(.badLength(cmd: header.cmd, length: length))
            }
            let inner = FrameHeader.length(at: p + overhead)
            guard inner == length - UInt32(overhead), inner <= UInt32(maxFrame) else {
                return .failure(.badInnerLength(outer: length, inner: inner))
            }
            return .success(inner)
        }
        if header.cmd == Command.data {
            return innerFrame(after: dataOverhead).map { .data(SessionID(decoding: p + FrameHeader.size), clientFrameLength: $0) }
        }
        if header.cmd == Command.push {
            let inner: UInt32
            switch innerFrame(after: pushOverhead) {
            case .success(let length): inner = length
            case .failure(let error): return .failure(error)
            }
            guard let tree = TreeWide.decode(p + FrameHeader.size) else {
                return .failure(.badScope((p + FrameHeader.size).load(as: UInt8.self)))
            }
            return .success(.push(tree, clientFrameLength: inner))
        }
        guard let expected = fixedLengths[header.cmd] else { return .failure(.unknownCommand(header.cmd)) }
        guard length == expected else { return .failure(.badLength(cmd: header.cmd, length: length)) }
        let body = p + FrameHeader.size
        switch header.cmd {
        case Command.hello:
            var h = Hello(role: .access, node: 0, link: 0, heartbeatMilliseconds: 0, maxFrame: 0)
            h.status = header.status
            h.version = UInt16(bigEndian: body.loadUnaligned(as: UInt16.self))
            h.role = body.load(fromByteOffset: 2, as: UInt8.self)
            h.node = FrameHeader.loadU32(body, 4)
            h.link = UInt16(bigEndian: body.loadUnaligned(fromByteOffset: 8, as: UInt16.self))
            h.heartbeatMilliseconds = FrameHeader.loadU32(body, 10)
            h.maxFrame = FrameHeader.loadU32(body, 14)
            h.maxQueuedBytes = FrameHeader.loadU32(body, 18)
            h.features = body.load(fromByteOffset: 3, as: UInt8.self)
            return .success(.hello(h))
        case Command.heartbeat:
            return .success(.heartbeat)
        case Command.opened:
            let link = UInt16(bigEndian: body.loadUnaligned(fromByteOffset: 12, as: UInt16.self))
            let family = body.load(fromByteOffset: 14, as: UInt8.self)
            let port = UInt16(bigEndian: body.loadUnaligned(fromByteOffset: 16, as: UInt16.self))
            let bytes = (body.loadUnaligned(fromByteOffset: 18, as: UInt64.self),
                         body.loadUnaligned(fromByteOffset: 26, as: UInt64.self))
            return .success(.opened(SessionID(decoding: body), link: link,
                                    peer: PeerAddress(family: family, port: port, bytes: bytes),
                                    transport: body.load(fromByteOffset: 15, as: UInt8.self)))
        case Command.closed:
            return .success(.closed(SessionID(decoding: body), cause: body.load(fromByteOffset: 12, as: UInt8.self)))
        case Command.pushDropped:
            return .success(.pushDropped(SessionID(decoding: body), count: FrameHeader.loadU32(body, 12)))
        case Command.move:
            let raw = body.load(fromByteOffset: 12, as: UInt8.self)
            guard let kind = MoveKind(rawValue: raw) else { return .failure(.badMoveKind(raw)) }
            let bytes = (body.loadUnaligned(fromByteOffset: 20, as: UInt64.self),
                         body.loadUnaligned(fromByteOffset: 28, as: UInt64.self))
            let peer = PeerAddress(family: body.load(fromByteOffset: 16, as: UInt8.self),
                                   port: UInt16(bigEndian: body.loadUnaligned(fromByteOffset: 18, as: UInt16.self)),
                                   bytes: bytes)
            return .success(.move(SessionID(decoding: body), kind,
                                  link: UInt16(bigEndian: body.loadUnaligned(fromByteOffset: 14, as: UInt16.self)),
                                  peer: peer, transport: body.load(fromByteOffset: 13, as: UInt8.self)))
        case Command.bind:
            return .success(.bind(SessionID(decoding: body), uid: FrameHeader.loadU32(body, 12)))
        case Command.unbind:
            return .success(.unbind(SessionID(decoding: body)))
        case Command.join:
            return .success(.join(SessionID(decoding: body), room: FrameHeader.loadU32(body, 12)))
        case Command.leave:
            return .success(.leave(SessionID(decoding: body), room: FrameHeader.loadU32(body, 12)))
        case Command.kick, Command.presenceQuery, Command.presence:
            guard let tree = TreeWide.decode(body) else { return .failure(.badScope(body.load(as: UInt8.self))) }
            switch header.cmd {
            case Command.kick: return .success(.kick(tree))
            case Command.presenceQuery: return .success(.presenceQuery(tree))
            default:
                return .success(.presence(tree, node: FrameHeader.loadU32(body, 20),
                                          count: FrameHeader.loadU32(body, 24)))
            }
        default:  // linkDown
            return .success(.linkDown(node: FrameHeader.loadU32(body, 0),
                                      link: UInt16(bigEndian: body.loadUnaligned(fromByteOffset: 4, as: UInt16.self))))
        }
    }

    /// Bytes `encode` writes; for DATA, the overhead only (the client frame follows it).
    public var encodedLength: Int {
        switch self {
        case .data: LinkMessage.dataOverhead
        case .hello: 40
        case .heartbeat: 18
        case .opened: 52
        case .closed, .pushDropped: 34
        case .linkDown: 24
        case .bind, .join, .leave: 34
        case .unbind: 30
        case .push: LinkMessage.pushOverhead
        case .kick, .presenceQuery: 38
        case .presence: 46
        case .move: 54
        }
    }

    /// Writes the message into at least `encodedLength` bytes. For DATA only the
    /// header and session id are written: the caller puts the client frame after them.
    public func encode(into p: UnsafeMutableRawPointer) {
        (p + FrameHeader.size).initializeMemory(as: UInt8.self, repeating: 0, count: encodedLength - FrameHeader.size)
        let body = p + FrameHeader.size
        var header = FrameHeader(length: UInt32(encodedLength), seq: 0, cmd: 0)
        switch self {
        case .hello(let h):
            header.cmd = Command.hello
            header.status = h.status
            body.storeBytes(of: h.version.bigEndian, as: UInt16.self)
            body.storeBytes(of: h.role, toByteOffset: 2, as: UInt8.self)
            body.storeBytes(of: h.node.bigEndian, toByteOffset: 4, as: UInt32.self)
            body.storeBytes(of: h.link.bigEndian, toByteOffset: 8, as: UInt16.self)
            body.storeBytes(of: h.heartbeatMilliseconds.bigEndian, toByteOffset: 10, as: UInt32.self)
            body.storeBytes(of: h.maxFrame.bigEndian, toByteOffset: 14, as: UInt32.self)
            body.storeBytes(of: h.maxQueuedBytes.bigEndian, toByteOffset: 18, as: UInt32.self)
            body.storeBytes(of: h.features, toByteOffset: 3, as: UInt8.self)
        case .heartbeat:
            header.cmd = Command.heartbeat
        case .opened(let session, let link, let peer, let transport):
            header.cmd = Command.opened
            session.encode(into: body)
            body.storeBytes(of: link.bigEndian, toByteOffset: 12, as: UInt16.self)
            body.storeBytes(of: peer.family, toByteOffset: 14, as: UInt8.self)
            body.storeBytes(of: transport, toByteOffset: 15, as: UInt8.self)
            body.storeBytes(of: peer.port.bigEndian, toByteOffset: 16, as: UInt16.self)
            body.storeBytes(of: peer.bytes.0, toByteOffset: 18, as: UInt64.self)
            body.storeBytes(of: peer.bytes.1, toByteOffset: 26, as: UInt64.self)
        case .data(let session, let inner):
            header.cmd = Command.data
            header.length = UInt32(LinkMessage.dataOverhead) + inner
            session.encode(into: body)
        case .closed(let session, let cause):
            header.cmd = Command.closed
            session.encode(into: body)
            body.storeBytes(of: cause, toByteOffset: 12, as: UInt8.self)
        case .pushDropped(let session, let count):
            header.cmd = Command.pushDropped
            session.encode(into: body)
            body.storeBytes(of: count.bigEndian, toByteOffset: 12, as: UInt32.self)
        case .move(let session, let kind, let link, let peer, let transport):
            header.cmd = Command.move
            session.encode(into: body)
            body.storeBytes(of: kind.rawValue, toByteOffset: 12, as: UInt8.self)
            body.storeBytes(of: transport, toByteOffset: 13, as: UInt8.self)
            body.storeBytes(of: link.bigEndian, toByteOffset: 14, as: UInt16.self)
            body.storeBytes(of: peer.family, toByteOffset: 16, as: UInt8.self)
            body.storeBytes(of: peer.port.bigEndian, toByteOffset: 18, as: UInt16.self)
            body.storeBytes(of: peer.bytes.0, toByteOffset: 20, as: UInt64.self)
            body.storeBytes(of: peer.bytes.1, toByteOffset: 28, as: UInt64.self)
        case .linkDown(let node, let link):
            header.cmd = Command.linkDown
            body.storeBytes(of: node.bigEndian, as: UInt32.self)
            body.storeBytes(of: link.bigEndian, toByteOffset: 4, as: UInt16.self)
        case .bind(let session, let value), .join(let session, let value), .leave(let session, let value):
            header.cmd = if case .bind = self { Command.bind } else if case .join = self { Command.join }
                         else { Command.leave }
            session.encode(into: body)
            body.storeBytes(of: value.bigEndian, toByteOffset: 12, as: UInt32.self)
        case .unbind(let session):
            header.cmd = Command.unbind
            session.encode(into: body)
        case .push(let tree, let inner):
            header.cmd = Command.push
            header.length = UInt32(LinkMessage.pushOverhead) + inner
            tree.encode(into: body)
        case .kick(let tree):
            header.cmd = Command.kick
            tree.encode(into: body)
        case .presenceQuery(let tree):
            header.cmd = Command.presenceQuery
            tree.encode(into: body)
        case .presence(let tree, let node, let count):
            header.cmd = Command.presence
            tree.encode(into: body)
            body.storeBytes(of: node.bigEndian, toByteOffset: 20, as: UInt32.self)
            body.storeBytes(of: count.bigEndian, toByteOffset: 24, as: UInt32.self)
        }
        header.encode(into: p)
    }
}

/// The statuses a gateway answers a client frame with itself (docs/PROTOCOL.md).
/// How a client reached its access node, as OPENED carries it (docs/LINK.md).
public enum OpenedTransport {
    public static let tcp: UInt8 = 0
    public static let webSocket: UInt8 = 1
    public static let tls: UInt8 = 2
    /// WebSocket over TLS (wss://).
    public static let webSocketTLS: UInt8 = 4
    public static let udp: UInt8 = 5
}

public enum GatewayStatus {
    public static let noUpstream: UInt32 = 0xFFFF_FF01
    public static let overloaded: UInt32 = 0xFFFF_FF02
    public static let reservedCommand: UInt32 = 0xFFFF_FF03
    /// The link the client's frames went up on died: what it sent before may be unanswered.
    public static let upstreamLost: UInt32 = 0xFFFF_FF04
    /// The frame is longer than the upstream server takes (its max_frame, from its HELLO).
    public static let tooLarge: UInt32 = 0xFFFF_FF05
    /// A UDP client's reply or push does not fit one datagram (udp_max_datagram): it is never fragmented.
    public static let datagramTooLarge: UInt32 = 0xFFFF_FF06
}
