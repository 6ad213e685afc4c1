import Atomics
import CLinux
import Glibc
import Logging

/// WebSocket on accepted connections (docs/WEBSOCKET.md), behind the transport seam. Receive runs
/// the opening handshake (`open`) and decodes client frames in place into the plain frame stream
/// (`read`); Send wraps each descriptor of the send ring in one data frame (`write`), which ends its
/// message (FIN) when the descriptor ends on a gateway frame's end, so a message always holds whole
/// frames. Pongs are made by Receive and written by Send between data frames; a close frame is
/// written by whichever side finds the stream between frames.
///
/// WebSocket over TLS (`wss://`, kind `webSocketTLS`) is the same code on the TLS transport's records:
/// the opening is the TLS handshake, then the upgrade; reads and writes go through OpenSSL where a
/// `ws://` connection's go to the socket, behind one branch on the slot's kind per call (not per frame).
final class WebSocketTransport: Transport, @unchecked Sendable {  // per-connection state has owners (WebSocketState.swift)
    private let inputs: UnsafeMutablePointer<WebSocketInput>
    private let outputs: UnsafeMutablePointer<WebSocketOutput>
    private let capacity: Int
    private let pool: ChunkPool
    private let logger: Logger
    /// Each listener's handshake rules (nil: not a WebSocket listener), set before the threads start.
    private var rules: [WebSocketHandshakeRules?] = []
    private let maxMessage: Int
    private let handshakeTicks: UInt64
    /// wss:// listeners' TLS (the engine's), nil when none.
    private let tls: TLSTransport?
    /// Send's: the gather list with a header before each descriptor, the headers' bytes, and where the
    /// gateway frames stand after each descriptor (kept once its header goes out).
    private let out: UnsafeMutablePointer<iovec>
    private let kinds: UnsafeMutablePointer<Int32>
    private let headers: UnsafeMutableRawPointer
    private let followers: UnsafeMutablePointer<FrameFollower>
    private let outCapacity: Int
    private unowned(unsafe) let engine: Engine

    init(engine: Engine, capacity: Int, logger: Logger) {
        let config = engine.config
        self.engine = engine
        self.capacity = capacity
        inputs = VirtualMemory.reserve(WebSocketInput.self, count: capacity)
        outputs = VirtualMemory.reserve(WebSocketOutput.self, count: capacity)
        pool = engine.pool
        self.logger = logger
        maxMessage = config.maxFrame
        let tickMs = UInt64(config.tickMilliseconds)
        handshakeTicks = (UInt64(config.webSocketHandshakeTimeout) * 1000 + tickMs - 1) / tickMs
        tls = engine.tls
        outCapacity = 2 * Int(gw_iov_max()) + 4
        out = .allocate(capacity: outCapacity)
        kinds = .allocate(capacity: outCapacity)
        headers = .allocate(byteCount: outCapacity * 10, alignment: 8)
        followers = .allocate(capacity: outCapacity)
    }

    deinit {
        VirtualMemory.release(inputs, count: capacity)
        VirtualMemory.release(outputs, count: capacity)
        out.deallocate()
        kinds.deallocate()
        headers.deallocate()
        followers.deallocate()
    }

    /// Over TLS, the TLS handshake's deadline and then the upgrade's, from the first turn.
    func openTicks(_ s: UnsafeMutablePointer<ConnectionSlot>) -> UInt64 {
        secured(s) ? tls!.handshakeTicks + handshakeTicks : handshakeTicks
    }

    func openTimeoutCause(_ s: UnsafeMutablePointer<ConnectionSlot>) -> CloseCause {
        secured(s) && !input(s).pointee.tlsDone ? .tlsHandshakeTimeout : .webSocket
    }

    /// A wss:// connection.
    @inline(__always)
    private func secured(_ s: UnsafeMutablePointer<ConnectionSlot>) -> Bool {
        s.pointee.monitor.transport == TransportKind.webSocketTLS.rawValue
    }

    /// The listeners, in Monitor's order (`listenerIndex`), before any connection is accepted.
    func listen(on addresses: [GatewayConfig.ListenAddress]) {
        let config = engine.config
        rules = addresses.map { address in
            address.webSocketPath.map {
                WebSocketHandshakeRules(path: $0, origins: config.webSocketOrigins, anyOrigin: config.webSocketAnyOrigin)
            }
        }
    }

    @inline(__always)
    private func input(_ s: UnsafeMutablePointer<ConnectionSlot>) -> UnsafeMutablePointer<WebSocketInput> {
        inputs + Int(engine.table.index(of: s))
    }

    @inline(__always)
    private func output(_ s: UnsafeMutablePointer<ConnectionSlot>) -> UnsafeMutablePointer<WebSocketOutput> {
        outputs + Int(engine.table.index(of: s))
    }

    // MARK: the bytes below: the socket, or TLS records

    /// Receive: up to `count` bytes from the socket or, over TLS, decrypted from its records.
    private func readBelow(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>, secured: Bool,
                           _ buffer: UnsafeMutableRawPointer, _ count: Int) -> TransportRead {
        if secured { return tls!.read(id, s, into: buffer, count: count) }
        while true {
            let n = Glibc.read(s.pointee.monitor.fd, buffer, count)
            if n > 0 { return .bytes(n) }
            if n == 0 { return .end }
            let e = gw_errno()
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK { return .wouldBlock }
            return .failed(e == ECONNRESET ? .peer : .ioError)
        }
    }

    /// A few bytes (a handshake answer, a close frame), best effort: true if all were taken. Over TLS the
    /// caller holds the transport lock, or is Receive before the connection is ready.
    private func writeBelow(_ s: UnsafeMutablePointer<ConnectionSlot>, _ bytes: UnsafeRawPointer, count: Int) -> Bool {
        secured(s) ? tls!.writeSmall(s, bytes, count: count) : Glibc.write(s.pointee.monitor.fd, bytes, count) == count
    }

    // MARK: Receive: the opening handshake

    func open(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) -> TransportOpening {
        let secured = secured(s)
        let st = input(s)
        if secured, !st.pointee.tlsDone {
            // wss://: the TLS handshake first; the upgrade request then comes in its records.
            let step = tls!.handshake(s)
            guard case .ready = step else { return step }
            st.pointee.tlsDone = true
        }
        if st.pointee.held == nil {
            st.pointee.held = pool.allocate(capacity: WebSocketHandshake.maxRequest)
            st.pointee.heldEnd = 0
        }
        let held = st.pointee.held!
        while true {
            let used = Int(st.pointee.heldEnd)
            let n: Int
            switch readBelow(id, s, secured: secured, held.bytes + used, WebSocketHandshake.maxRequest - used) {
            case .bytes(let got): n = got
            case .wouldBlock, .control: return .pending
            case .end: return .failed(.peer)
            case .failed(let cause): return .failed(cause)
            }
            st.pointee.heldEnd = UInt16(used + n)
            let listener = Int(s.pointee.monitor.listenerIndex)
            switch WebSocketHandshake.parse(held.bytes, count: used + n, rules: rules[listener]!) {
            case .incomplete:
                continue
            case .refused(let refusal):
                logger.debug("closing \(s.pointee.monitor.peer): WebSocket handshake refused with \(refusal.rawValue)")
                withUnsafeTemporaryAllocation(byteCount: WebSocketHandshake.maxResponse, alignment: 8) { answer in
                    let length = WebSocketHandshake.writeRefusal(refusal, into: answer.baseAddress!)
                    _ = writeBelow(s, answer.baseAddress!, count: length)  // best effort: the connection closes anyway
                }
                return .failed(.webSocket)
            case .upgrade(let length, let keyOffset):
                let written = withUnsafeTemporaryAllocation(byteCount: WebSocketHandshake.maxResponse, alignment: 8) {
                    answer -> Bool in
                    let count = WebSocketHandshake.writeAccept(key: held.bytes + keyOffset, into: answer.baseAddress!)
                    return writeBelow(s, answer.baseAddress!, count: count)  // into an empty socket buffer
                }
                guard written else { return .failed(.ioError) }
                st.pointee.heldStart = UInt16(length)
                if length == used + n { releaseHeld(st) }
                s.atomic(\.transportReady).store(1, ordering: .releasing)
                return .ready
            }
        }
    }

    private func releaseHeld(_ st: UnsafeMutablePointer<WebSocketInput>) {
        if let held = st.pointee.held { pool.release(held) }
        st.pointee.held = nil
        st.pointee.heldStart = 0
        st.pointee.heldEnd = 0
    }

    // MARK: Receive: frames in

    func read(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>, into buffer: UnsafeMutableRawPointer,
              count: Int) -> TransportRead {
        let st = input(s)
        if st.pointee.pendingEnd != 0 { return .failed(CloseCause(rawValue: Int(st.pointee.pendingEnd) - 1)!) }
        var sawControl = false
        while true {
            var n: Int
            if let held = st.pointee.held {
                // Frames that came in the handshake's read.
                n = min(count, Int(st.pointee.heldEnd - st.pointee.heldStart))
                buffer.copyMemory(from: held.bytes + Int(st.pointee.heldStart), byteCount: n)
                st.pointee.heldStart = st.pointee.heldStart + UInt16(n)
                if st.pointee.heldStart == st.pointee.heldEnd { releaseHeld(st) }
            } else {
                // Over TLS a short read says nothing (a record at a time): read until OpenSSL would block.
                let secured = secured(s)
                if !secured, st.pointee.shortRead {
                    st.pointee.shortRead = false
                    // Drained at the last read; the next arrival raises an event (as for a plain read).
                    if !s.endings.hungUp { return sawControl ? .control : .wouldBlock }
                }
                switch readBelow(id, s, secured: secured, buffer, count) {
                case .bytes(let got): n = got
                case .wouldBlock, .control: return sawControl ? .control : .wouldBlock
                case .end: return .end
                case .failed(let cause): return .failed(cause)
                }
                st.pointee.shortRead = !secured && n < count
            }
            // Decoded in a copy, stored back: a mutating call through `st.pointee` is an inout access to the
            // whole record, whose writer half Send uses meanwhile (ThreadSanitizer reports it).
            var reader = st.pointee.reader
            let outcome = reader.decode(buffer, count: n, maxMessage: maxMessage) { event in
                sawControl = true
                if case .ping(let payload) = event { queuePong(id, s, output(s), payload) }
            }
            st.pointee.reader = reader
            switch outcome {
            case .ok(let payload):
                if payload > 0 { return .bytes(payload) }
            case .closed(let code, let payload):
                // The peer's close: echoed (1000 when it gave no code), and the connection closes.
                sendClose(s, output(s), code: code == WebSocketCloseCode.noStatus ? WebSocketCloseCode.normal : code)
                return end(st, cause: .peer, payload: payload)
            case .failed(let code, let payload):
                logger.debug("closing \(s.pointee.monitor.peer): WebSocket close \(code)")
                sendClose(s, output(s), code: code)
                return end(st, cause: .webSocket, payload: payload)
            }
        }
    }

    /// Frame bytes before a close are returned first; the close follows at the next read.
    private func end(_ st: UnsafeMutablePointer<WebSocketInput>, cause: CloseCause, payload: Int) -> TransportRead {
        if payload == 0 { return .failed(cause) }
        st.pointee.pendingEnd = cause.flag
        return .bytes(payload)
    }

    /// A pong for the latest ping, for Send to write between frames.
    private func queuePong(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>,
                           _ st: UnsafeMutablePointer<WebSocketOutput>, _ payload: UnsafeRawBufferPointer) {
        s.lockTransport()
        // One being written goes on; otherwise the newest replaces it (RFC 6455 5.5.3).
        guard !st.pointee.closeSent, st.pointee.controlSent == 0, !(st.pointee.recordHeld && st.pointee.controlOffered)
        else {
            s.unlockTransport()
            return
        }
        let chunk = st.pointee.control ?? pool.allocate(capacity: 2 + WebSocketFrame.maxControlPayload)
        let h = WebSocketFrame.writeHeader(.pong, length: payload.count, into: chunk.bytes)
        if payload.count > 0 { (chunk.bytes + h).copyMemory(from: payload.baseAddress!, byteCount: payload.count) }
        st.pointee.control = chunk
        st.pointee.controlLength = UInt8(h + payload.count)
        s.atomic(\.transportOutput).store(1, ordering: .releasing)
        s.unlockTransport()
        engine.send.input.post(s, id)
    }

    /// Writes a close frame now if the stream is between frames (else none: the connection closes
    /// without it); either way nothing more is sent.
    private func sendClose(_ s: UnsafeMutablePointer<ConnectionSlot>, _ st: UnsafeMutablePointer<WebSocketOutput>,
                           code: UInt16) {
        s.lockTransport()
        defer { s.unlockTransport() }
        guard !st.pointee.closeSent else { return }
        st.pointee.closeSent = true
        if let control = st.pointee.control, st.pointee.controlSent == 0 {
            pool.release(control)
            st.pointee.control = nil
            st.pointee.controlLength = 0
        }
        guard st.pointee.atBoundary, !st.pointee.recordHeld else { return }
        var frame: (UInt32, UInt16) = (0, 0)
        withUnsafeMutableBytes(of: &frame) { f in
            let h = WebSocketFrame.writeHeader(.close, length: 2, into: f.baseAddress!)
            f.baseAddress!.storeBytes(of: code.bigEndian, toByteOffset: h, as: UInt16.self)
            _ = writeBelow(s, f.baseAddress!, count: h + 2)  // best effort: the connection is closing
        }
    }

    // MARK: Send: frames out

    private enum Segment: Int32 { case pendingHeader = -1, control = -2 }

    func write(_ s: UnsafeMutablePointer<ConnectionSlot>, _ iov: UnsafePointer<iovec>, count: Int) -> TransportWrite {
        let st = output(s)
        s.lockTransport()
        defer { s.unlockTransport() }
        if st.pointee.closeSent {
            // Nothing may follow a close frame: the rest is dropped with the connection.
            s.atomic(\.transportOutput).store(0, ordering: .relaxed)
            var total = 0
            for i in 0..<count { total += iov[i].iov_len }
            return .wrote(total)
        }
        var segments = 0
        func add(_ base: UnsafeMutableRawPointer?, _ length: Int, _ kind: Int32) {
            out[segments] = iovec(iov_base: base, iov_len: length)
            kinds[segments] = kind
            segments += 1
        }
        var next = 0
        if st.pointee.controlSent > 0, let control = st.pointee.control {
            add(control.bytes + Int(st.pointee.controlSent), Int(st.pointee.controlLength - st.pointee.controlSent),
                Segment.control.rawValue)
        } else if !st.pointee.atBoundary {
            // The data frame in progress: the rest of its header, then the rest of its descriptor.
            let sent = Int(st.pointee.headerSent)
            let left = Int(st.pointee.headerLength) - sent
            if left > 0 {
                withUnsafeMutableBytes(of: &st.pointee.header) { add($0.baseAddress! + sent, left, Segment.pendingHeader.rawValue) }
            }
            if count > 0 {
                add(iov[0].iov_base, min(iov[0].iov_len, Int(st.pointee.frameLeft)), 0)
                next = 1
            }
        }
        // After a held record the control goes only where it was offered then (see WebSocketOutput).
        var offered = false
        if st.pointee.controlSent == 0, !st.pointee.recordHeld || st.pointee.controlOffered,
           let control = st.pointee.control {
            add(control.bytes, Int(st.pointee.controlLength), Segment.control.rawValue)
            offered = true
        }
        // One data frame per descriptor: a header, then the descriptor's bytes. It continues the message
        // of the one before unless that ended on a gateway frame's end, and ends it if it does so itself.
        var frames = st.pointee.frames
        while next < count && segments + 2 <= outCapacity {
            let h = headers + 10 * next
            let opcode: WebSocketOpcode = frames.atFrameEnd ? .binary : .continuation
            frames.follow(iov[next].iov_base!, iov[next].iov_len)
            followers[next] = frames
            let length = WebSocketFrame.writeHeader(opcode, length: iov[next].iov_len, fin: frames.atFrameEnd, into: h)
            add(h, length, Int32(next) | 1 << 30)
            add(iov[next].iov_base, iov[next].iov_len, Int32(next))
            next += 1
        }
        if segments == 0 { return .wrote(0) }
        var n: Int
        if secured(s) {
            var held = false
            switch tls!.write(s, out, count: segments, held: &held) {
            case .wrote(let taken): n = taken
            case .failed(let cause): return .failed(cause)
            }
            st.pointee.recordHeld = held
            st.pointee.controlOffered = held && offered
        } else {
            repeat { n = writev(s.pointee.monitor.fd, out, Int32(segments)) } while n < 0 && gw_errno() == EINTR
            if n < 0 {
                let e = gw_errno()
                if e == EAGAIN || e == EWOULDBLOCK { return .wrote(0) }
                return .failed(e == EPIPE || e == ECONNRESET ? .peer : .ioError)
            }
        }
        return .wrote(account(st, s, written: n, segments: segments))
    }

    /// Advances the stream's state over `written` bytes of the gather list; returns the frame bytes taken.
    private func account(_ st: UnsafeMutablePointer<WebSocketOutput>, _ s: UnsafeMutablePointer<ConnectionSlot>,
                         written: Int, segments: Int) -> Int {
        var left = written
        var taken = 0
        for i in 0..<segments where left > 0 {
            let length = out[i].iov_len
            let n = min(left, length)
            left -= n
            switch kinds[i] {
            case Segment.pendingHeader.rawValue:
                st.pointee.headerSent = st.pointee.headerSent + UInt8(n)
            case Segment.control.rawValue:
                st.pointee.controlSent = st.pointee.controlSent + UInt8(n)
                if st.pointee.controlSent == st.pointee.controlLength {
                    pool.release(st.pointee.control!)
                    st.pointee.control = nil
                    st.pointee.controlLength = 0
                    st.pointee.controlSent = 0
                    s.atomic(\.transportOutput).store(0, ordering: .relaxed)
                }
            case let kind where kind & (1 << 30) != 0:
                // A new frame's header: the frame is begun once any of it is out.
                let payload = out[i + 1].iov_len
                st.pointee.frames = followers[Int(kinds[i] & ~(1 << 30))]
                st.pointee.frameLeft = UInt32(payload)
                st.pointee.headerLength = UInt8(length)
                st.pointee.headerSent = UInt8(n)
                if n < length {
                    withUnsafeMutableBytes(of: &st.pointee.header) {
                        $0.baseAddress!.copyMemory(from: out[i].iov_base!, byteCount: length)
                    }
                }
            default:
                st.pointee.frameLeft = st.pointee.frameLeft - UInt32(n)
                taken += n
            }
        }
        if st.pointee.headerSent == st.pointee.headerLength {
            st.pointee.headerSent = 0
            st.pointee.headerLength = 0
        }
        return taken
    }

    /// Send's goodbye before our side shuts: 1001 when the gateway stops, else 1000.
    func finish(_ s: UnsafeMutablePointer<ConnectionSlot>, cause: CloseCause) {
        sendClose(s, output(s), code: cause == .shutdown ? WebSocketCloseCode.goingAway : WebSocketCloseCode.normal)
        if secured(s) { tls!.finish(s, cause: cause) }  // then TLS's close_notify
    }

    func release(_ s: UnsafeMutablePointer<ConnectionSlot>, index: UInt32) {
        let (st, out) = (inputs + Int(index), outputs + Int(index))
        if secured(s) { tls!.release(index: index, handshakeDone: st.pointee.tlsDone) }
        releaseHeld(st)
        if let control = out.pointee.control { pool.release(control) }
        UnsafeMutableRawPointer(st).initializeMemory(as: UInt8.self, repeating: 0,
                                                      count: MemoryLayout<WebSocketInput>.stride)
        UnsafeMutableRawPointer(out).initializeMemory(as: UInt8.self, repeating: 0,
                                                       count: MemoryLayout<WebSocketOutput>.stride)
    }
}
