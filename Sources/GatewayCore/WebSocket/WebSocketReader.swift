/// One connection's WebSocket input, decoded in place as it is read (RFC 6455 section 5):
/// the payload of binary messages is unmasked and moved down over the frame headers, so
/// the bytes left at the front of the read are the plain stream of gateway frames, ready
/// for the frame cutter. A frame header or a control frame cut by a read boundary is kept
/// here; nothing else is held, so a message is never buffered whole.
///
/// Rules (docs/WEBSOCKET.md): binary messages only (text: 1003); a message at most
/// `maxMessage` bytes (1009); a gateway frame may not span messages (1007); control
/// frames may come between a message's fragments; anything else against RFC 6455: 1002.
/// Owned by the thread that reads the connection.
public struct WebSocketReader {
    public enum Event {
        /// A ping's payload (up to 125 bytes), valid during the call: answer it with a pong.
        case ping(UnsafeRawBufferPointer)
        /// A pong's payload, valid during the call.
        case pong(UnsafeRawBufferPointer)
    }

    public enum Outcome: Equatable, Sendable {
        /// `payload` bytes of binary messages are at the front of the buffer.
        case ok(payload: Int)
        /// The peer sent a close frame with `code` (1005 when it had none): answer it and close.
        /// Bytes after it are ignored.
        case closed(code: UInt16, payload: Int)
        /// The input breaks the rules: close with `code`. `payload` bytes before the fault are valid.
        case failed(code: UInt16, payload: Int)
    }

    // Laid out widest first, so the record packs (184 bytes).
    /// A control frame's payload (at most 125 bytes).
    private var control: (UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64,
                          UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64, UInt64) =
        (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
    /// A header cut by a read boundary (up to 14 bytes).
    private var header: (UInt64, UInt64) = (0, 0)
    /// Payload bytes of the current frame still to come.
    private var remaining: UInt64 = 0
    /// Payload bytes of the binary message being read, so far.
    private var messageBytes: UInt64 = 0
    private var mask: UInt32 = 0
    /// The gateway frames inside the message.
    private var frames = FrameFollower()
    /// Which side reads: a server requires masked frames, a client unmasked ones. Stored inverted
    /// so that zeroed memory is a server's fresh reader (a table of them is reserved, not filled).
    private let readsServer: Bool
    private var fromClient: Bool { !readsServer }
    private var headerFilled: UInt8 = 0
    /// The current frame's payload is being read (after its header).
    private var inPayload = false
    private var opcode: UInt8 = 0
    private var fin = false
    private var phase: UInt8 = 0
    private var messageOpen = false
    private var controlFilled: UInt8 = 0
    /// A close frame came or a rule was broken: further input is ignored.
    public private(set) var finished = false

    public init(fromClient: Bool = true) { readsServer = !fromClient }

    /// True while a message or a frame is partly read (a gateway frame's deadline runs).
    public var isPartial: Bool { messageOpen || inPayload || headerFilled > 0 }

    /// Decodes `count` bytes at `p`, leaving the payload of binary messages at `p`'s front.
    public mutating func decode(_ p: UnsafeMutableRawPointer, count: Int, maxMessage: Int,
                                event: (Event) -> Void) -> Outcome {
        guard !finished else { return .ok(payload: 0) }
        var at = 0
        var out = 0
        while at < count {
            if !inPayload {
                switch takeHeader(p + at, count - at) {
                case .taken(let n): at += n
                case .incomplete: return .ok(payload: out)
                case .failed(let code): return fail(code, out)
                }
                if let code = checkHeader(maxMessage: maxMessage) { return fail(code, out) }
            }
            let n = Int(min(remaining, UInt64(count - at)))
            if opcode & 0x8 == 0 {
                phase = UInt8(WebSocketFrame.unmask(p + at, to: p + out, count: n, mask: mask, phase: Int(phase)))
                frames.follow(p + out, n)
                out += n
            } else {
                withUnsafeMutableBytes(of: &control) { c in
                    phase = UInt8(WebSocketFrame.unmask(p + at, to: c.baseAddress! + Int(controlFilled), count: n,
                                                        mask: mask, phase: Int(phase)))
                }
                controlFilled += UInt8(n)
            }
            at += n
            remaining -= UInt64(n)
            if remaining == 0 {
                inPayload = false
                if let ending = endFrame(event) {
                    switch ending {
                    case .closed(let code, _): finished = true; return .closed(code: code, payload: out)
                    case .failed(let code, _): return fail(code, out)
                    case .ok: break
                    }
                }
            }
        }
        return .ok(payload: out)
    }

    private mutating func fail(_ code: UInt16, _ payload: Int) -> Outcome {
        finished = true
        return .failed(code: code, payload: payload)
    }

    private enum HeaderStep { case taken(Int), incomplete, failed(UInt16) }

    /// Parses the next frame header, from the read or from the bytes kept from the last one.
    private mutating func takeHeader(_ p: UnsafeMutableRawPointer, _ count: Int) -> HeaderStep {
        let parsed: WebSocketFrame.Parse
        var taken: Int
        if headerFilled == 0 {
            parsed = WebSocketFrame.parse(p, count: count, fromClient: fromClient)
            taken = 0
        } else {
            let filled = Int(headerFilled)
            let add = min(WebSocketFrame.maxHeader - filled, count)
            let side = fromClient
            parsed = withUnsafeMutableBytes(of: &header) { h in
                (h.baseAddress! + filled).copyMemory(from: p, byteCount: add)
                return WebSocketFrame.parse(h.baseAddress!, count: filled + add, fromClient: side)
            }
            taken = -filled
        }
        switch parsed {
        case .invalid(let code):
            return .failed(code)
        case .incomplete:
            // Fewer than 14 bytes in all: keep them for the next read.
            withUnsafeMutableBytes(of: &header) { h in
                (h.baseAddress! + Int(headerFilled)).copyMemory(from: p, byteCount: count)
            }
            headerFilled += UInt8(count)
            return .incomplete
        case .header(let h):
            taken += h.headerLength
            headerFilled = 0
            inPayload = true
            opcode = h.opcode
            fin = h.fin
            mask = h.mask
            phase = 0
            remaining = h.payloadLength
            return .taken(taken)
        }
    }

    /// The frame's place in the message sequence and its size; a close code when it breaks a rule.
    private mutating func checkHeader(maxMessage: Int) -> UInt16? {
        switch WebSocketOpcode(rawValue: opcode)! {
        case .text:
            return WebSocketCloseCode.unsupportedData
        case .binary, .continuation:
            guard messageOpen == (opcode == 0) else { return WebSocketCloseCode.protocolError }
            guard remaining <= UInt64(maxMessage) - messageBytes else { return WebSocketCloseCode.messageTooBig }
            messageOpen = true
            messageBytes += remaining
        case .close, .ping, .pong:
            controlFilled = 0
        }
        return nil
    }

    /// A frame's payload is complete.
    private mutating func endFrame(_ event: (Event) -> Void) -> Outcome? {
        switch WebSocketOpcode(rawValue: opcode)! {
        case .binary, .continuation:
            guard fin else { return nil }
            defer { messageOpen = false; messageBytes = 0 }
            guard frames.atFrameEnd else {
                return .failed(code: WebSocketCloseCode.invalidPayload, payload: 0)
            }
            return nil
        case .ping, .pong:
            let n = Int(controlFilled)
            let ping = opcode == WebSocketOpcode.ping.rawValue
            withUnsafeBytes(of: &control) {
                let payload = UnsafeRawBufferPointer(rebasing: $0[0..<n])
                event(ping ? .ping(payload) : .pong(payload))
            }
            return nil
        case .close:
            let n = Int(controlFilled)
            if n == 0 { return .closed(code: WebSocketCloseCode.noStatus, payload: 0) }
            return withUnsafeBytes(of: &control) { c -> Outcome in
                guard n >= 2 else { return .failed(code: WebSocketCloseCode.protocolError, payload: 0) }
                let code = UInt16(c[0]) << 8 | UInt16(c[1])
                guard WebSocketCloseCode.isValidOnWire(code) else {
                    return .failed(code: WebSocketCloseCode.protocolError, payload: 0)
                }
                guard Self.isUTF8(UnsafeRawBufferPointer(rebasing: c[2..<n])) else {
                    return .failed(code: WebSocketCloseCode.invalidPayload, payload: 0)
                }
                return .closed(code: code, payload: 0)
            }
        case .text:
            return nil  // refused at its header
        }
    }

    /// Well-formed UTF-8 (no overlong forms, surrogates or values past U+10FFFF), for close reasons.
    static func isUTF8(_ b: UnsafeRawBufferPointer) -> Bool {
        var i = 0
        while i < b.count {
            let c = b[i]
            if c < 0x80 { i += 1; continue }
            let need: Int
            var lo: UInt8 = 0x80, hi: UInt8 = 0xBF
            switch c {
            case 0xC2...0xDF: need = 1
            case 0xE0: need = 2; lo = 0xA0
            case 0xE1...0xEC, 0xEE, 0xEF: need = 2
            case 0xED: need = 2; hi = 0x9F
            case 0xF0: need = 3; lo = 0x90
            case 0xF1...0xF3: need = 3
            case 0xF4: need = 3; hi = 0x8F
            default: return false
            }
            guard i + need < b.count, b[i + 1] >= lo && b[i + 1] <= hi else { return false }
            var k = 2
            while k <= need {
                guard b[i + k] & 0xC0 == 0x80 else { return false }
                k += 1
            }
            i += need + 1
        }
        return true
    }
}
