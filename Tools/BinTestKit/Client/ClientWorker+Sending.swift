import Glibc

/// Issuing requests (stamping their send or scheduled time) and writing them out.
extension ClientWorker {
    /// Closed loop: top the connection up to the in-flight cap.
    func issueClosedLoop(_ j: Int, now: UInt64) {
        while slots[j].outstanding < cap && slots[j].budget > 0 {
            stamps[stampIndex(j, slots[j].nextSeq)] = now
            slots[j].nextSeq &+= 1
            slots[j].budget -= 1
        }
        flush(j)
    }

    /// One request stamped with `time` (connrate stamps the connect start).
    func issueOne(_ j: Int, stamp time: UInt64) {
        stamps[stampIndex(j, slots[j].nextSeq)] = time
        slots[j].nextSeq &+= 1
        if slots[j].budget != .max { slots[j].budget -= 1 }
        flush(j)
    }

    /// Open loop: the m-th request of connection c is due at start + (c + m * conns) * period,
    /// so the whole schedule is one evenly spaced sequence over all connections.
    @inline(__always)
    func scheduledTime(slot j: Int, round: UInt64) -> UInt64 {
        let position = UInt64(slots[j].index) &+ round &* UInt64(settings.conns)
        return startTime &+ UInt64(Double(position) * period!)
    }

    /// Open loop: send every request of this connection that is due, each stamped with its
    /// scheduled time, so a server that falls behind shows as latency (no coordinated omission).
    func issueDue(_ j: Int, now: UInt64) {
        guard slots[j].phase == .open else { return }
        while slots[j].outstanding < cap && slots[j].budget > 0 {
            let due = scheduledTime(slot: j, round: slots[j].scheduled)
            if due > now || due >= sendDeadline { break }
            stamps[stampIndex(j, slots[j].nextSeq)] = due
            slots[j].nextSeq &+= 1
            slots[j].budget -= 1
            slots[j].scheduled += 1
        }
        flush(j)
    }

    /// Walks this worker's share of the schedule up to now, round-robin over its slots.
    func scheduleTick(_ now: UInt64) {
        while scheduledTime(slot: cursorSlot, round: cursorRound) <= now {
            issueDue(cursorSlot, now: now)
            cursorSlot += 1
            if cursorSlot == slots.count {
                cursorSlot = 0
                cursorRound += 1
            }
        }
    }

    /// Writes issued requests, regenerated into one buffer per send() call, until the
    /// socket is full (then EPOLLOUT resumes) or nothing is left.
    func flush(_ j: Int) {
        if usesWebSocket { return flushWebSocket(j) }
        if usesUDP { return flushUDP(j) }
        while slots[j].hasUnsent && slots[j].writable {
            let slot = slots[j]
            let count = pattern.fill(sendBuffer, capacity: Self.bufferSize, from: slot.writeSeq,
                                     offset: slot.writeOffset, until: slot.nextSeq, uid: slot.uid)
            let sent = sendBytes(j, sendBuffer, count)
            if sent >= 0 {
                let total = slot.writeOffset + sent
                slots[j].writeSeq &+= UInt32(total / pattern.frameSize)
                slots[j].writeOffset = total % pattern.frameSize
                continue
            }
            let error = errno
            if error == EAGAIN || error == EWOULDBLOCK {
                slots[j].writable = false
            } else if error != EINTR {
                serverClosed(j, .failed(error))
            }
        }
    }
}
