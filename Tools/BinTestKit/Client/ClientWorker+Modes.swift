/// What each mode does when a connection opens and when replies arrive.
extension ClientWorker {
    func onOpen(_ j: Int, now: UInt64) {
        switch settings.mode {
        case .load, .pingpong:
            if period != nil { issueDue(j, now: now) } else { issueClosedLoop(j, now: now) }
        case .connrate:
            issueOne(j, stamp: slots[j].connectStarted)
        case .idle:
            issueOne(j, stamp: now)
        case .push:
            sendLogin(j)
        }
    }

    func afterReplies(_ j: Int, now: UInt64) {
        switch settings.mode {
        case .load, .pingpong:
            if stopping || slots[j].budget == 0 {
                if slots[j].outstanding == 0 { close(j) }
            } else if period != nil {
                issueDue(j, now: now)
            } else {
                issueClosedLoop(j, now: now)
            }
        case .connrate:
            result.connections += 1
            close(j)
            if !stopping && slots[j].budget > 0 { openConnection(j, now: now) }
        case .idle:
            if idlePhase == .reproving {
                result.aliveAfter += 1
                close(j)
            } else {
                result.aliveBefore += 1
            }
        case .push:
            break
        }
    }

    /// Idle mode: prove every connection, hold them all for --duration, prove them again.
    func idleTick(_ now: UInt64) {
        switch idlePhase {
        case .proving:
            if now >= deadline {
                expire(keepAnswered: true)
            } else if slots.contains(where: { $0.phase == .connecting || ($0.phase == .open && $0.outstanding > 0) }) {
                return
            }
            idlePhase = .holding
            holdEnd = now + MonotonicTime.nanoseconds(settings.duration)
            deadline = holdEnd + graceNanoseconds
        case .holding:
            guard now >= holdEnd else { return }
            idlePhase = .reproving
            for j in slots.indices where slots[j].phase == .open { issueOne(j, stamp: now) }
        case .reproving:
            break
        }
    }
}
