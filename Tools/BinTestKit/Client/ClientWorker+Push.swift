import Glibc
import GatewayCore

/// Push mode: the login, the phases of a run, and the check of every frame a connection receives
/// (the login echo once, then pushes only), as its bytes stream in.
extension ClientWorker {
    /// What a slot keeps of the frame arriving: the header, and the login's body or the push's
    /// stamp, target and scope (18 + 13 bytes, rounded up).
    static let pushPrefix = 32

    /// The uid, and the room, connection j logs in as.
    func pushUid(_ j: Int) -> UInt32 { UInt32(slots[j].index % settings.pushUids + 1) }

    private func name(_ j: Int) -> String { "conn \(slots[j].index) (uid \(pushUid(j)))" }

    /// LOGIN: cmd 10, seq 1, body uid and room. A socket that has just connected has room for it.
    func sendLogin(_ j: Int) {
        let uid = pushUid(j)
        // Over WebSocket the login goes in one binary message (a 6-byte header masked with key 0).
        let h = usesWebSocket ? 6 : 0
        if usesWebSocket { WebSocketFrame.writeHeader(.binary, length: PushFrame.loginLength, mask: 0, into: sendBuffer) }
        FrameHeader(length: UInt32(PushFrame.loginLength), seq: 1, cmd: PushFrame.loginCmd, uid: uid)
            .encode(into: sendBuffer + h)
        sendBuffer.storeBytes(of: uid.bigEndian, toByteOffset: h + FrameHeader.size, as: UInt32.self)
        sendBuffer.storeBytes(of: uid.bigEndian, toByteOffset: h + FrameHeader.size + 4, as: UInt32.self)
        let sent = sendBytes(j, sendBuffer, h + PushFrame.loginLength)
        if sent != h + PushFrame.loginLength {
            let why = sent < 0 ? ClientSocket.describe(errno) : "\(sent) of \(h + PushFrame.loginLength) bytes written"
            fault(j, "\(name(j)): login not sent: \(why)")
        }
    }

    /// Logging in (bounded by --grace from the start), then waiting for a first push (--grace
    /// more); the window of reading that push opens ends --duration later, at the deadline.
    func pushTick(_ now: UInt64) {
        switch pushPhase {
        case .loggingIn:
            guard now >= deadline || loginsPending == 0 else { return }
            for j in slots.indices {
                switch slots[j].phase {
                case .connecting: connectFailed(j, reason: "no connection by the deadline")
                case .open where !slots[j].loggedIn:
                    fault(j, "\(name(j)): no login echo within --grace \(Format.fixed(settings.grace, 1)) s")
                default: break
                }
            }
            loginsDone(now)
        case .awaitingPush:
            // The run loop ends at the deadline; this names why.
            if now >= deadline && open > 0 {
                result.errors += 1
                result.note("no push within --grace \(Format.fixed(settings.grace, 1)) s of \(open) connections "
                    + "logging in (is the core pushing, with --push-after passed?)")
            }
        case .reading:
            break
        }
    }

    /// Every connection is logged in or gone: a push may open the window from now on (even one
    /// in the same read as the last login echo).
    private func loginsDone(_ now: UInt64) {
        guard pushPhase == .loggingIn else { return }
        pushPhase = .awaitingPush
        deadline = now + graceNanoseconds
    }

    /// Checks `count` received bytes; returns the pushes completed in the window. On a fault
    /// the slot is closed.
    func consumePushes(_ j: Int, count: Int, now: UInt64) -> Int {
        var bytes = UnsafeRawPointer(receiveBuffer)
        var left = count
        var counted = 0
        let prefix = headers + j * headerStride
        while left > 0 {
            let offset = slots[j].replyOffset
            let keep = offset < FrameHeader.size
                ? FrameHeader.size : min(slots[j].frameLength, FrameHeader.size + PushFrame.padOffset)
            if offset < keep {
                let take = min(keep - offset, left)
                memcpy(prefix + offset, bytes, take)
                slots[j].replyOffset += take
                bytes += take
                left -= take
                if slots[j].replyOffset < keep { break }
                if keep == FrameHeader.size {
                    guard let length = frameLength(j, FrameHeader(decoding: prefix)) else { return counted }
                    slots[j].frameLength = length
                } else if !prefixMatches(j, prefix) {
                    return counted
                }
            } else {
                let take = min(slots[j].frameLength - offset, left)
                let seq = PushFrame.loadU32(prefix, 4)
                let expected = pattern.body(seq: seq) + (offset - FrameHeader.size)
                if memcmp(bytes, expected, take) != 0 {
                    padMismatch(j, seq: seq, received: bytes.assumingMemoryBound(to: UInt8.self), expected: expected,
                                count: take)
                    return counted
                }
                slots[j].replyOffset += take
                bytes += take
                left -= take
            }
            if slots[j].replyOffset == slots[j].frameLength {
                slots[j].replyOffset = 0
                if slots[j].frameLength == PushFrame.loginLength {
                    slots[j].loggedIn = true
                    loginsPending -= 1
                    if loginsPending == 0 { loginsDone(now) }
                } else if delivered(j, prefix, now: now) {
                    counted += 1
                }
            }
        }
        return counted
    }

    /// The length the frame must have: a push's, or the login echo's once. (Messages are built
    /// only on a mismatch: this runs for every push.)
    private func frameLength(_ j: Int, _ header: FrameHeader) -> Int? {
        let pushLength = FrameHeader.size + settings.pushSize
        if header.status != 0 {
            fault(j, "\(name(j)): frame cmd \(header.cmd) seq \(header.seq) with status 0x"
                + String(header.status, radix: 16) + " (error), expected 0")
        } else if header.cmd == PushFrame.cmd {
            if header.length == UInt32(pushLength) { return pushLength }
            fault(j, "\(name(j)) push seq \(header.seq): length \(header.length), expected \(pushLength)")
        } else if header.cmd != PushFrame.loginCmd {
            fault(j, "\(name(j)): unexpected frame cmd \(header.cmd) seq \(header.seq) length \(header.length) "
                + "(only pushes, cmd \(PushFrame.cmd), and the login echo may arrive)")
        } else if slots[j].loggedIn {
            fault(j, "\(name(j)): a second login echo")
        } else if header.length != UInt32(PushFrame.loginLength) || header.seq != 1 || header.uid != pushUid(j) {
            fault(j, "\(name(j)): login echo length \(header.length) seq \(header.seq) uid \(header.uid), "
                + "expected the login's \(PushFrame.loginLength), 1, \(pushUid(j))")
        } else {
            return PushFrame.loginLength
        }
        return nil
    }

    /// The login echo's body is the login's; a push names this connection: its scope, and as
    /// target (in the body and the header's uid) this connection's uid, room, or 0 for all.
    private func prefixMatches(_ j: Int, _ prefix: UnsafeMutableRawPointer) -> Bool {
        let body = prefix + FrameHeader.size
        let uid = pushUid(j)
        if slots[j].frameLength == PushFrame.loginLength {
            let echoed = (PushFrame.loadU32(body, 0), PushFrame.loadU32(body, 4))
            if echoed == (uid, uid) { return true }
            fault(j, "\(name(j)): login echo body uid \(echoed.0) room \(echoed.1), expected \(uid) and \(uid)")
            return false
        }
        let scope = settings.pushScope
        let expected = scope == .all ? 0 : uid
        let target = PushFrame.loadU32(body, PushFrame.targetOffset)
        let sentScope = body.load(fromByteOffset: PushFrame.scopeOffset, as: UInt8.self)
        let headerUid = PushFrame.loadU32(prefix, 14)
        if sentScope == scope.linkScope.rawValue && target == expected && headerUid == target { return true }
        let seq = PushFrame.loadU32(prefix, 4)
        fault(j, "\(name(j)) push seq \(seq): scope \(sentScope) target \(target) (header uid \(headerUid)), "
            + "expected scope \(scope.linkScope.rawValue) (\(scope.rawValue)) target \(expected): "
            + (target == expected ? "malformed" : "meant for another recipient"))
        return false
    }

    /// A whole push arrived: counted, with its latency, while the window is open (the first push
    /// after logging in opens it; its deadline, or the last push owed with --count, closes it).
    private func delivered(_ j: Int, _ prefix: UnsafeMutableRawPointer, now: UInt64) -> Bool {
        switch pushPhase {
        case .loggingIn where pushesOwed == .max:
            return false
        case .loggingIn, .awaitingPush:
            // With --count every push is owed: one may overtake another connection's login echo
            // (they can travel different links), and still opens the window.
            pushPhase = .reading
            result.windowStart = now
            deadline = now + MonotonicTime.nanoseconds(settings.duration)
        case .reading:
            if now >= deadline { return false }
        }
        let sent = UInt64(bigEndian: prefix.loadUnaligned(fromByteOffset: FrameHeader.size, as: UInt64.self))
        result.latency.record(min(now &- min(sent, now), LatencyHistogram.highest))
        result.replies += 1
        result.replyBytes += UInt64(slots[j].frameLength)
        if pushesOwed != .max {
            pushesOwed -= 1
            if pushesOwed == 0 { deadline = now }
        }
        return true
    }

    private func padMismatch(_ j: Int, seq: UInt32, received: UnsafePointer<UInt8>, expected: UnsafePointer<UInt8>,
                             count: Int) {
        var k = 0
        while k < count - 1 && received[k] == expected[k] { k += 1 }
        let byte = slots[j].replyOffset - FrameHeader.size + k
        fault(j, "\(name(j)) push seq \(seq): body mismatch at byte \(byte) "
            + "(got \(received[k]), expected \(expected[k]))")
    }
}
