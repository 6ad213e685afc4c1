/// The 18-byte frame header of docs/PROTOCOL.md: big-endian, packed.
public struct FrameHeader: Equatable, Sendable {
    public static let size = 18

    /// Total frame length, header included.
    public var length: UInt32
    public var seq: UInt32
    public var cmd: UInt16
    public var status: UInt32
    public var uid: UInt32

    public init(length: UInt32, seq: UInt32, cmd: UInt16, status: UInt32 = 0, uid: UInt32 = 0) {
        self.length = length
        self.seq = seq
        self.cmd = cmd
        self.status = status
        self.uid = uid
    }

    /// Reads a header from at least `FrameHeader.size` bytes.
    @inlinable
    public init(decoding p: UnsafeRawPointer) {
        length = FrameHeader.loadU32(p, 0)
        seq = FrameHeader.loadU32(p, 4)
        cmd = UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 8, as: UInt16.self))
        status = FrameHeader.loadU32(p, 10)
        uid = FrameHeader.loadU32(p, 14)
    }

    /// Writes the header into at least `FrameHeader.size` bytes.
    @inlinable
    public func encode(into p: UnsafeMutableRawPointer) {
        p.storeBytes(of: length.bigEndian, toByteOffset: 0, as: UInt32.self)
        p.storeBytes(of: seq.bigEndian, toByteOffset: 4, as: UInt32.self)
        p.storeBytes(of: cmd.bigEndian, toByteOffset: 8, as: UInt16.self)
        p.storeBytes(of: status.bigEndian, toByteOffset: 10, as: UInt32.self)
        p.storeBytes(of: uid.bigEndian, toByteOffset: 14, as: UInt32.self)
    }

    /// The length field alone, from the first four bytes of a header.
    @inlinable
    public static func length(at p: UnsafeRawPointer) -> UInt32 { loadU32(p, 0) }

    @inlinable
    static func loadU32(_ p: UnsafeRawPointer, _ offset: Int) -> UInt32 {
        UInt32(bigEndian: p.loadUnaligned(fromByteOffset: offset, as: UInt32.self))
    }
}

/// Command ids the gateway keeps for itself (PROTOCOL.md: 0xFF00-0xFFFF).
public enum ReservedCommand {
    public static let range: ClosedRange<UInt16> = 0xFF00...0xFFFF
    /// Heartbeat: the gateway replies with the same frame itself; the handler never sees it.
    public static let heartbeat: UInt16 = 0xFF01
    /// Please reconnect: sent by a gateway that is handing its listeners to a new process. The body
    /// is 4 bytes, the milliseconds left before this connection is closed (docs/PROTOCOL.md).
    public static let pleaseReconnect: UInt16 = 0xFF02
    /// Upstream lost: the link this connection's frames went up on died. Status `upstream_lost`,
    /// seq the last frame forwarded on that link; frames sent before it may never be answered.
    public static let upstreamLost: UInt16 = 0xFF03
    /// UDP address token (docs/UDP.md): the gateway puts it first in each datagram to a session that
    /// has not proved its address; the client proves it by sending the same 26-byte frame back.
    public static let udpToken: UInt16 = 0xFF04
}
