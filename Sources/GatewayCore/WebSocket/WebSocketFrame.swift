/// RFC 6455 section 5 frame opcodes.
public enum WebSocketOpcode: UInt8, Sendable {
    case continuation = 0x0, text = 0x1, binary = 0x2, close = 0x8, ping = 0x9, pong = 0xA

    var isControl: Bool { rawValue & 0x8 != 0 }
}

/// Close status codes (RFC 6455 7.4.1) the gateway sends.
public enum WebSocketCloseCode {
    public static let normal: UInt16 = 1000
    public static let goingAway: UInt16 = 1001
    public static let protocolError: UInt16 = 1002
    /// A text message: the gateway takes binary messages only.
    public static let unsupportedData: UInt16 = 1003
    /// No status was sent (never on the wire).
    public static let noStatus: UInt16 = 1005
    /// A close reason that is not UTF-8, or a frame split across messages.
    public static let invalidPayload: UInt16 = 1007
    public static let messageTooBig: UInt16 = 1009
    public static let internalError: UInt16 = 1011

    /// Codes a peer may send in a close frame (RFC 6455 7.4.1 and 7.4.2).
    public static func isValidOnWire(_ code: UInt16) -> Bool {
        switch code {
        case 1000...1003, 1007...1011, 3000...4999: return true
        default: return false
        }
    }
}

/// Frame headers: written for the gateway's own frames, parsed from the peer's.
public enum WebSocketFrame {
    /// The longest header: 2 bytes, a 64-bit length, a 4-byte mask.
    public static let maxHeader = 14
    /// Longest payload of a control frame.
    public static let maxControlPayload = 125

    /// Writes a frame header (FIN set) for `length` payload bytes, masked with `mask` when given
    /// (a client's frames; the caller masks the payload); returns the header's length.
    @discardableResult
    public static func writeHeader(_ opcode: WebSocketOpcode, length: Int, mask: UInt32? = nil, fin: Bool = true,
                                   into out: UnsafeMutableRawPointer) -> Int {
        out.storeBytes(of: (fin ? 0x80 : 0) | opcode.rawValue, as: UInt8.self)
        let maskBit: UInt8 = mask == nil ? 0 : 0x80
        var n: Int
        if length < 126 {
            out.storeBytes(of: maskBit | UInt8(length), toByteOffset: 1, as: UInt8.self)
            n = 2
        } else if length <= 0xFFFF {
            out.storeBytes(of: maskBit | 126, toByteOffset: 1, as: UInt8.self)
            out.storeBytes(of: UInt16(length).bigEndian, toByteOffset: 2, as: UInt16.self)
            n = 4
        } else {
            out.storeBytes(of: maskBit | 127, toByteOffset: 1, as: UInt8.self)
            out.storeBytes(of: UInt64(length).bigEndian, toByteOffset: 2, as: UInt64.self)
            n = 10
        }
        if let mask {
            out.storeBytes(of: mask, toByteOffset: n, as: UInt32.self)
            n += 4
        }
        return n
    }

    /// The header's length for `length` payload bytes, unmasked.
    public static func headerLength(payload length: Int) -> Int { length < 126 ? 2 : length <= 0xFFFF ? 4 : 10 }

    /// A parsed header.
    public struct Header: Equatable, Sendable {
        public var fin: Bool
        public var opcode: UInt8
        public var masked: Bool
        /// The mask's four bytes as they lie in memory (applied byte for byte).
        public var mask: UInt32
        public var payloadLength: UInt64
        public var headerLength: Int
    }

    public enum Parse: Equatable, Sendable {
        case incomplete
        case header(Header)
        /// The header breaks the protocol: close with this code.
        case invalid(UInt16)
    }

    /// Parses a header at `p` (at most `maxHeader` bytes are looked at). `fromClient`: frames must be
    /// masked (a server reading), else must not be (a client reading). Reserved bits (no extension
    /// is negotiated), unknown opcodes, long or fragmented control frames and non-minimal lengths
    /// are protocol errors.
    public static func parse(_ p: UnsafeRawPointer, count: Int, fromClient: Bool) -> Parse {
        guard count >= 2 else { return .incomplete }
        let b0 = p.load(as: UInt8.self)
        let b1 = p.load(fromByteOffset: 1, as: UInt8.self)
        let fin = b0 & 0x80 != 0
        let opcode = b0 & 0x0F
        guard b0 & 0x70 == 0 else { return .invalid(WebSocketCloseCode.protocolError) }
        guard let op = WebSocketOpcode(rawValue: opcode) else { return .invalid(WebSocketCloseCode.protocolError) }
        let masked = b1 & 0x80 != 0
        guard masked == fromClient else { return .invalid(WebSocketCloseCode.protocolError) }
        var length = UInt64(b1 & 0x7F)
        var n = 2
        if op.isControl && (!fin || length > UInt64(maxControlPayload)) {
            return .invalid(WebSocketCloseCode.protocolError)
        }
        if length == 126 {
            guard count >= 4 else { return .incomplete }
            length = UInt64(UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 2, as: UInt16.self)))
            guard length >= 126 else { return .invalid(WebSocketCloseCode.protocolError) }
            n = 4
        } else if length == 127 {
            guard count >= 10 else { return .incomplete }
            length = UInt64(bigEndian: p.loadUnaligned(fromByteOffset: 2, as: UInt64.self))
            guard length > 0xFFFF, length >> 63 == 0 else { return .invalid(WebSocketCloseCode.protocolError) }
            n = 10
        }
        var mask: UInt32 = 0
        if masked {
            guard count >= n + 4 else { return .incomplete }
            mask = p.loadUnaligned(fromByteOffset: n, as: UInt32.self)
            n += 4
        }
        return .header(Header(fin: fin, opcode: opcode, masked: masked, mask: mask, payloadLength: length,
                              headerLength: n))
    }

    /// XORs `count` bytes from `source` into `target` with the mask, starting at byte `phase` (0...3)
    /// of the mask; returns the phase after them. `target` may equal `source` or lie before it
    /// (compacting in place), a word at a time.
    @discardableResult
    public static func unmask(_ source: UnsafeRawPointer, to target: UnsafeMutableRawPointer, count: Int,
                              mask: UInt32, phase: Int) -> Int {
        // The mask rotated so that its byte `phase` comes first, doubled into a 64-bit word.
        let shift = UInt32(phase * 8)
        let rotated = shift == 0 ? mask : mask >> shift | mask << (32 - shift)
        let wide = UInt64(rotated) | UInt64(rotated) << 32
        var i = 0
        while count - i >= 8 {
            let v = source.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            target.storeBytes(of: v ^ wide, toByteOffset: i, as: UInt64.self)
            i += 8
        }
        while i < count {
            let m = UInt8(truncatingIfNeeded: rotated >> UInt32((i & 3) * 8))
            target.storeBytes(of: source.load(fromByteOffset: i, as: UInt8.self) ^ m, toByteOffset: i, as: UInt8.self)
            i += 1
        }
        return (phase + count) & 3
    }
}
