/// Checks an arriving datagram (docs/UDP.md): one or more whole frames, each 18...max_frame bytes, and
/// nothing else; frames never span datagrams. The first frame may be the client's echo of its address
/// token (`ReservedCommand.udpToken`, a 26-byte frame), which the gateway keeps for itself.
/// Monitor runs it on every datagram before a session sees a byte of it.
public enum DatagramSplitter {
    /// A token frame: the header and the 8-byte token.
    public static let tokenFrameSize = FrameHeader.size + 8

    public enum Verdict: Equatable, Sendable {
        /// Whole frames from `start` to the end (none when `start` is the datagram's length); `token`, the
        /// token a leading token frame carried.
        case frames(start: Int, token: UInt64?)
        case garbage(Fault)
    }

    /// Why a datagram was dropped; each has its own counter (UDPStats).
    public enum Fault: Int, CaseIterable, Sendable {
        /// Fewer than 18 bytes.
        case runt
        /// A frame length outside 18...max_frame, or a token frame that is not 26 bytes.
        case badLength
        /// The last frame runs past the end of the datagram.
        case partialFrame
    }

    public static func split(_ p: UnsafeRawPointer, count: Int, maxFrame: Int) -> Verdict {
        guard count >= FrameHeader.size else { return .garbage(.runt) }
        var at = 0
        var token: UInt64?
        if UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt16.self)) == ReservedCommand.udpToken {
            guard FrameHeader.length(at: p) == UInt32(tokenFrameSize) else { return .garbage(.badLength) }
            guard count >= tokenFrameSize else { return .garbage(.partialFrame) }
            token = UInt64(bigEndian: p.loadUnaligned(fromByteOffset: FrameHeader.size, as: UInt64.self))
            at = tokenFrameSize
        }
        let start = at
        while at < count {
            guard count - at >= FrameHeader.size else { return .garbage(.partialFrame) }
            let length = Int(FrameHeader.length(at: p + at))
            guard length >= FrameHeader.size, length <= maxFrame else { return .garbage(.badLength) }
            guard length <= count - at else { return .garbage(.partialFrame) }
            at += length
        }
        return .frames(start: start, token: token)
    }

    /// Writes the token frame the gateway puts first in each datagram to a session that has not yet
    /// proved its address: length 26, seq 0, cmd 0xFF04, status 0, uid 0, the token big-endian.
    public static func writeTokenFrame(_ token: UInt64, into p: UnsafeMutableRawPointer) {
        FrameHeader(length: UInt32(tokenFrameSize), seq: 0, cmd: ReservedCommand.udpToken).encode(into: p)
        p.storeBytes(of: token.bigEndian, toByteOffset: FrameHeader.size, as: UInt64.self)
    }
}
