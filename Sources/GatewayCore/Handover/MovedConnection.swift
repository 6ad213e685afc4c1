/// What travels with one client connection in a hot restart's hand-over (docs/HANDOVER.md): its
/// descriptor (SCM_RIGHTS, beside this record) and the state below, with a forwarding client's
/// session. Nothing else does: not the handler's own state, not timers (they start again), not
/// flood-limit tokens (full again).
public struct MovedConnection: Sendable, Equatable {
    /// The descriptor in this process (-1 once sent or closed).
    public var fd: Int32
    /// The client's address, as the PROXY protocol gave it behind a balancer (else the socket's peer).
    public var peer: PeerAddress
    /// It counted against its address's limits (max_conns_per_ip): the new process counts it too.
    public var addressCounted: Bool
    /// Bytes read and not dealt: whole frames not yet dealt, then the frame half received.
    public var input: [UInt8]
    /// Bytes produced and not written: the rest of a reply half written, then the replies after it.
    public var output: [UInt8]
    /// A forwarding client's session (nil: the handler's client, or a session never opened).
    public var session: MovedSession?

    public init(fd: Int32, peer: PeerAddress, addressCounted: Bool, input: [UInt8], output: [UInt8],
                session: MovedSession? = nil) {
        self.fd = fd
        self.peer = peer
        self.addressCounted = addressCounted
        self.input = input
        self.output = output
        self.session = session
    }

    /// Bytes of the fixed part of a record: flags, family, port, 16 address bytes, two lengths.
    static let fixedSize = 1 + 1 + 2 + 16 + 4 + 4
    /// Most input or output bytes one record carries: more than any bound lets a connection hold
    /// (max_frame is at most 64 MiB, max_queued_bytes the same).
    public static let maxBytes = 1 << 28

    /// Appends the record (without the descriptor), big-endian: flags (bit 0 address counted, bit 1
    /// a session follows), family (4 or 6), port, 16 address bytes, input length, output length, the
    /// session (MovedSession.encode), input, output.
    public func encode(into out: inout [UInt8]) {
        out.append((addressCounted ? 1 : 0) | (session == nil ? 0 : 2))
        out.append(peer.family)
        out.append(UInt8(peer.port >> 8))
        out.append(UInt8(peer.port & 0xFF))
        withUnsafeBytes(of: peer.bytes) { out.append(contentsOf: $0) }
        for n in [input.count, output.count] {
            let v = UInt32(n)
            out.append(contentsOf: [UInt8(v >> 24), UInt8(v >> 16 & 0xFF), UInt8(v >> 8 & 0xFF), UInt8(v & 0xFF)])
        }
        session?.encode(into: &out)
        out.append(contentsOf: input)
        out.append(contentsOf: output)
    }

    /// Reads `count` records from `bytes`, giving them `fds` in order; nil unless the records fill
    /// the bytes exactly, each well formed (known flags, family 4 or 6, lengths within `maxBytes`).
    public static func decode(_ bytes: [UInt8], count: Int, fds: [Int32]) -> [MovedConnection]? {
        guard count >= 0, fds.count == count else { return nil }
        var at = 0
        var records: [MovedConnection] = []
        records.reserveCapacity(count)
        func u32(_ i: Int) -> Int {
            Int(bytes[i]) << 24 | Int(bytes[i + 1]) << 16 | Int(bytes[i + 2]) << 8 | Int(bytes[i + 3])
        }
        for k in 0..<count {
            guard bytes.count - at >= fixedSize else { return nil }
            let flags = bytes[at], family = bytes[at + 1]
            guard flags <= 3, family == 4 || family == 6 else { return nil }
            let port = UInt16(bytes[at + 2]) << 8 | UInt16(bytes[at + 3])
            var address: (UInt64, UInt64) = (0, 0)
            withUnsafeMutableBytes(of: &address) { $0.copyBytes(from: bytes[(at + 4)..<(at + 20)]) }
            let (inLength, outLength) = (u32(at + 20), u32(at + 24))
            at += fixedSize
            var session: MovedSession?
            if flags & 2 != 0 {
                guard let s = MovedSession.decode(bytes, at: &at) else { return nil }
                session = s
            }
            guard inLength <= maxBytes, outLength <= maxBytes, bytes.count - at >= inLength + outLength else {
                return nil
            }
            records.append(MovedConnection(fd: fds[k], peer: PeerAddress(family: family, port: port, bytes: address),
                                           addressCounted: flags & 1 != 0, input: Array(bytes[at..<(at + inLength)]),
                                           output: Array(bytes[(at + inLength)..<(at + inLength + outLength)]),
                                           session: session))
            at += inLength + outLength
        }
        return at == bytes.count ? records : nil
    }
}
