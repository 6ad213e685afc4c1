import Glibc
import GatewayCore

/// Reading replies and checking each one, byte for byte, as it streams in.
extension ClientWorker {
    struct ReadOutcome {
        var replies = 0
        /// When the last bytes were read: the end of those replies' latency.
        var time: UInt64 = 0
        /// Set when the read loop ended on a close or an error instead of EAGAIN.
        var end: ReadEnd?
    }

    /// Reads until EAGAIN (the socket is edge-triggered). A fault closes the slot, which
    /// the caller sees as a new generation. Push mode stops at a short read unless the peer
    /// hung up: the socket was drained, and data arriving later raises a new edge.
    func receive(_ j: Int, hangup: Bool) -> ReadOutcome {
        var outcome = ReadOutcome()
        let generation = slots[j].generation
        while true {
            let count = readBytes(j, receiveBuffer, Self.bufferSize)
            if count > 0 {
                outcome.time = MonotonicTime.now()
                var frameBytes = count
                if usesWebSocket {
                    guard let payload = decodeWebSocket(j, count: count) else { return outcome }
                    frameBytes = payload
                }
                if usesUDP { frameBytes = takeUDPToken(j, count: count) }
                guard settings.mode == .push else {
                    outcome.replies += consume(j, count: frameBytes, now: outcome.time)
                    if slots[j].generation != generation { return outcome }
                    continue
                }
                // Thousands of sockets with a push or two each: the EAGAIN read would double the syscalls.
                outcome.replies += consumePushes(j, count: frameBytes, now: outcome.time)
                // TLS: a record a read; UDP: a datagram a read.
                let drained = count < Self.bufferSize && !hangup && slots[j].tls == nil && !usesUDP
                if slots[j].generation != generation || drained { return outcome }
                continue
            }
            if count == 0 {
                outcome.end = .closed
                return outcome
            }
            let error = errno
            if error == EAGAIN || error == EWOULDBLOCK { return outcome }
            if error != EINTR {
                outcome.end = .failed(error)
                return outcome
            }
        }
    }

    /// Checks `count` received bytes against the expected reply stream; returns the
    /// replies completed. On a mismatch the slot is faulted and closed.
    private func consume(_ j: Int, count: Int, now: UInt64) -> Int {
        var bytes = UnsafeRawPointer(receiveBuffer)
        var left = count
        var completed = 0
        let headerBytes = headers + j * headerStride
        while left > 0 {
            let offset = slots[j].replyOffset
            if offset < FrameHeader.size {
                let take = min(FrameHeader.size - offset, left)
                memcpy(headerBytes + offset, bytes, take)
                slots[j].replyOffset += take
                bytes += take
                left -= take
                if slots[j].replyOffset < FrameHeader.size { break }
                guard checkHeader(j, FrameHeader(decoding: headerBytes)) else { return completed }
            } else {
                let take = min(pattern.frameSize - offset, left)
                let expected = pattern.body(seq: slots[j].expectSeq) + (offset - FrameHeader.size)
                if memcmp(bytes, expected, take) != 0 {
                    bodyMismatch(j, received: bytes.assumingMemoryBound(to: UInt8.self), expected: expected, count: take)
                    return completed
                }
                slots[j].replyOffset += take
                bytes += take
                left -= take
            }
            if slots[j].replyOffset == pattern.frameSize {
                let sent = stamps[stampIndex(j, slots[j].expectSeq)]
                result.latency.record(min(now &- min(sent, now), LatencyHistogram.highest))
                result.replies += 1
                result.replyBytes += UInt64(pattern.frameSize)
                slots[j].expectSeq &+= 1
                slots[j].replyOffset = 0
                completed += 1
            }
        }
        return completed
    }

    /// Every header field must be the request's own. (Messages are built only on a
    /// mismatch: this runs for every reply.)
    private func checkHeader(_ j: Int, _ header: FrameHeader) -> Bool {
        let slot = slots[j]
        if slot.outstanding == 0 {
            fault(j, "conn \(slot.index): unsolicited reply seq \(header.seq) with no request outstanding")
        } else if header.seq != slot.expectSeq {
            fault(j, "conn \(slot.index): reply seq \(header.seq), expected \(slot.expectSeq) (reordered or dropped)")
        } else if header.length != UInt32(pattern.frameSize) {
            fault(j, "conn \(slot.index) seq \(slot.expectSeq): reply length \(header.length), expected \(pattern.frameSize)")
        } else if header.cmd != FramePattern.cmd {
            fault(j, "conn \(slot.index) seq \(slot.expectSeq): reply cmd \(header.cmd), expected \(FramePattern.cmd)")
        } else if header.uid != slot.uid {
            fault(j, "conn \(slot.index) seq \(slot.expectSeq): reply uid \(header.uid), expected \(slot.uid)")
        } else if header.status != 0 {
            fault(j, "conn \(slot.index) seq \(slot.expectSeq): reply status \(header.status) (error), expected 0")
        } else {
            return true
        }
        return false
    }

    private func bodyMismatch(_ j: Int, received: UnsafePointer<UInt8>, expected: UnsafePointer<UInt8>, count: Int) {
        let slot = slots[j]
        var k = 0
        while k < count - 1 && received[k] == expected[k] { k += 1 }
        let byte = slot.replyOffset - FrameHeader.size + k
        fault(j, "conn \(slot.index) seq \(slot.expectSeq): body mismatch at byte \(byte) "
            + "(got \(received[k]), expected \(expected[k]))")
    }
}
