import Glibc
import GatewayCore

/// --transport ws: the opening handshake after the TCP connect, requests sent as binary messages of
/// whole frames, replies decoded from the gateway's messages in place before they are checked.
/// Requests are masked with the key 0, which RFC 6455 allows on the wire (a browser picks keys at
/// random, to protect proxies, not the server): the gateway's unmasking pass runs either way.
extension ClientWorker {
    var usesWebSocket: Bool { settings.transport == .ws }

    /// The TCP connect finished: send the upgrade request; the connection opens with the 101 answer.
    func startUpgrade(_ j: Int) {
        let request = Array(("GET \(settings.webSocketPath) HTTP/1.1\r\nHost: \(settings.host):\(settings.port)\r\n"
            + "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            + "Sec-WebSocket-Version: 13\r\n\r\n").utf8)
        // A few hundred bytes into a new socket's empty buffer: all of it or an error.
        let sent = request.withUnsafeBytes { sendBytes(j, $0.baseAddress!, $0.count) }
        guard sent == request.count else {
            return connectFailed(j, reason: "WebSocket request not sent: \(ClientSocket.describe(errno))")
        }
        slots[j].upgrading = true
    }

    /// Reads the answer to the upgrade request; opens the connection at its blank line.
    func continueUpgrade(_ j: Int) {
        while true {
            // The gateway sends nothing after its 101 before our first request: every byte read is the answer's.
            let n = readBytes(j, receiveBuffer, 512)
            if n < 0 && errno == EINTR { continue }
            if n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) { return }
            guard n > 0 else { return connectFailed(j, reason: "closed during the WebSocket handshake") }
            let bytes = UnsafeRawBufferPointer(start: receiveBuffer, count: n)
            for (k, byte) in bytes.enumerated() {
                let at = slots[j].upgradeBytes + k
                if at < 12 { (headers + j * headerStride).storeBytes(of: byte, toByteOffset: at, as: UInt8.self) }
                slots[j].upgradeTail = slots[j].upgradeTail << 8 | UInt32(byte)
                guard slots[j].upgradeTail == 0x0D0A_0D0A else { continue }
                let status = String(decoding: UnsafeRawBufferPointer(start: headers + j * headerStride, count: 12),
                                    as: UTF8.self)
                guard status == "HTTP/1.1 101", k == n - 1 else {
                    return connectFailed(j, reason: "WebSocket handshake answered \(status)")
                }
                slots[j].upgrading = false
                slots[j].phase = .open
                slots[j].writable = true
                open += 1
                onOpen(j, now: MonotonicTime.now())
                return
            }
            slots[j].upgradeBytes += n
            guard slots[j].upgradeBytes < 4096 else { return connectFailed(j, reason: "WebSocket answer too long") }
        }
    }

    /// The slot closed: its next connection starts a handshake and a reader afresh.
    func resetWebSocket(_ j: Int) {
        slots[j].upgrading = false
        slots[j].upgradeBytes = 0
        slots[j].upgradeTail = 0
        slots[j].messageOpen = false
        webSocketReaders[j] = WebSocketReader(fromClient: false)
        webSocketPending[j] = nil
    }

    /// Frames out in binary messages of whole frames: one message per send.
    func flushWebSocket(_ j: Int) {
        while slots[j].writable {
            if let pending = webSocketPending[j] {
                let sent = pending.withUnsafeBytes { sendBytes(j, $0.baseAddress!, $0.count) }
                if sent < 0 {
                    if errno == EAGAIN || errno == EWOULDBLOCK { slots[j].writable = false } else if errno != EINTR {
                        serverClosed(j, .failed(errno))
                    }
                    return
                }
                webSocketPending[j] = sent == pending.count ? nil : Array(pending[sent...])
                continue
            }
            guard slots[j].hasUnsent else { return }
            let slot = slots[j]
            // Messages of up to 64 KiB (as the gateway's), so that none passes a max_frame a frame fits;
            // a bigger frame goes alone in its message.
            let room = (64 << 10) - WebSocketFrame.maxHeader
            if pattern.frameSize > room {
                flushBigFrame(j)
                continue
            }
            var count = pattern.fill(sendBuffer + WebSocketFrame.maxHeader, capacity: room, from: slot.writeSeq,
                                     offset: 0, until: slot.nextSeq, uid: slot.uid)
            count -= count % pattern.frameSize
            let h = WebSocketFrame.headerLength(payload: count) + 4
            let message = sendBuffer + WebSocketFrame.maxHeader - h
            WebSocketFrame.writeHeader(.binary, length: count, mask: 0, into: message)
            slots[j].writeSeq &+= UInt32(count / pattern.frameSize)
            let sent = sendBytes(j, message, h + count)
            if sent == h + count { continue }
            if sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR {
                return serverClosed(j, .failed(errno))
            }
            // The rest of this message goes before anything else.
            let done = max(sent, 0)
            webSocketPending[j] = Array(UnsafeRawBufferPointer(start: message + done, count: h + count - done))
            if sent < 0 && errno != EINTR { slots[j].writable = false }
        }
    }

    /// A frame bigger than the send buffer: one message of exactly that frame, its header first (kept
    /// as pending bytes), then its bytes streamed from the pattern as on TCP (a key-0 mask changes none).
    private func flushBigFrame(_ j: Int) {
        let slot = slots[j]
        if !slot.messageOpen {
            var header = [UInt8](repeating: 0, count: WebSocketFrame.maxHeader)
            let h = header.withUnsafeMutableBytes {
                WebSocketFrame.writeHeader(.binary, length: pattern.frameSize, mask: 0, into: $0.baseAddress!)
            }
            webSocketPending[j] = Array(header[0..<h])
            slots[j].messageOpen = true
            return
        }
        let count = pattern.fill(sendBuffer, capacity: Self.bufferSize, from: slot.writeSeq, offset: slot.writeOffset,
                                 until: slot.writeSeq &+ 1, uid: slot.uid)
        let sent = sendBytes(j, sendBuffer, count)
        if sent < 0 {
            if errno == EAGAIN || errno == EWOULDBLOCK { slots[j].writable = false } else if errno != EINTR {
                serverClosed(j, .failed(errno))
            }
            return
        }
        let total = slot.writeOffset + sent
        if total == pattern.frameSize {
            slots[j].writeSeq &+= 1
            slots[j].writeOffset = 0
            slots[j].messageOpen = false
        } else {
            slots[j].writeOffset = total
        }
    }

    /// Decodes `count` bytes just read into `receiveBuffer` in place: the frame bytes of the
    /// gateway's messages, or nil when it sent a close or broke the framing (the slot is closed).
    func decodeWebSocket(_ j: Int, count: Int) -> Int? {
        switch webSocketReaders[j].decode(receiveBuffer, count: count, maxMessage: Int.max >> 1, event: { _ in }) {
        case .ok(let payload):
            return payload
        case .closed(let code, _):
            fault(j, "conn \(slots[j].index): the gateway closed the WebSocket with \(code)")
            return nil
        case .failed(let code, _):
            fault(j, "conn \(slots[j].index): the gateway's WebSocket frames broke the protocol (\(code))")
            return nil
        }
    }
}
