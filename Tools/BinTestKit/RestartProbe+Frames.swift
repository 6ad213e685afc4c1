import CLinux
import GatewayCore
import Glibc

/// Requests out, echoes and PLEASE_RECONNECT in, each reply checked byte for byte as it streams in.
extension RestartProbe {
    /// One request in flight: the frames of `bin_test client` (FramePattern), seq increasing.
    func issue(_ j: Int, now: UInt64) {
        slots[j].seq &+= 1
        slots[j].outstanding = true
        slots[j].written = 0
        counts.requestsSent += 1
        // A short connection's deadline covers its whole cycle, set at its connect.
        if slots[j].long { slots[j].deadline = now + timeout }
        flush(j, now: now)
    }

    func flush(_ j: Int, now: UInt64) {
        while slots[j].outstanding && slots[j].written < pattern.frameSize {
            let count = pattern.fill(sendBuffer, capacity: pattern.frameSize, from: slots[j].seq,
                                     offset: slots[j].written, until: slots[j].seq &+ 1, uid: slots[j].uid)
            let sent = send(slots[j].fd, sendBuffer, count, Int32(MSG_NOSIGNAL))
            if sent > 0 {
                slots[j].written += sent
                continue
            }
            let error = errno
            if sent == 0 || error == EAGAIN || error == EWOULDBLOCK {
                if !slots[j].watchingWrites && !watch(j, writes: true, operation: EPOLL_CTL_MOD) {
                    failed(j, errno, now: now)
                }
                return
            }
            if error != EINTR { return failed(j, error, now: now) }
        }
        if slots[j].watchingWrites && !watch(j, writes: false, operation: EPOLL_CTL_MOD) { failed(j, errno, now: now) }
    }

    /// Reads until the socket is empty (a connection has at most a reply and a notice in flight), then
    /// sends the next request: a *please reconnect* that came before it is seen first, however late
    /// this thread runs, and stops it, as PROTOCOL.md asks of a client.
    func receive(_ j: Int, now: UInt64) {
        let generation = slots[j].generation
        while slots[j].generation == generation {
            let count = read(slots[j].fd, readBuffer, Self.readSize)
            if count > 0 {
                consume(j, count: count, now: now)
                continue
            }
            if count == 0 { return serverClosed(j, now: now) }
            let error = errno
            if error == EINTR { continue }
            if error != EAGAIN && error != EWOULDBLOCK { return failed(j, error, now: now) }
            break
        }
        if slots[j].generation == generation && slots[j].due {
            slots[j].due = false
            issue(j, now: now)
        }
    }

    private func consume(_ j: Int, count: Int, now: UInt64) {
        let generation = slots[j].generation
        let head = arriving + j * Self.noticeSize
        var bytes = UnsafeRawPointer(readBuffer)
        var left = count
        while left > 0 && slots[j].generation == generation {
            let have = slots[j].received
            let take: Int
            if slots[j].notice || have < FrameHeader.size {
                take = min((slots[j].notice ? Self.noticeSize : FrameHeader.size) - have, left)
                memcpy(head + have, bytes, take)
            } else {
                take = min(pattern.frameSize - have, left)
                let expected = pattern.body(seq: slots[j].seq) + (have - FrameHeader.size)
                if memcmp(bytes, expected, take) != 0 {
                    return mismatch(j, "reply seq \(slots[j].seq): body differs from the request", now: now)
                }
            }
            slots[j].received += take
            bytes += take
            left -= take
            if slots[j].notice {
                if slots[j].received == Self.noticeSize {
                    slots[j].notice = false
                    slots[j].received = 0
                    noticed(j, milliseconds: UInt32(bigEndian: head.loadUnaligned(fromByteOffset: FrameHeader.size,
                                                                                   as: UInt32.self)), now: now)
                }
            } else if slots[j].received == FrameHeader.size {
                headerArrived(j, FrameHeader(decoding: head), now: now)
            } else if slots[j].received == pattern.frameSize {
                replied(j, now: now)
            }
        }
    }

    private func headerArrived(_ j: Int, _ header: FrameHeader, now: UInt64) {
        if header.cmd == ReservedCommand.pleaseReconnect {
            let expected = FrameHeader(length: UInt32(Self.noticeSize), seq: 0, cmd: ReservedCommand.pleaseReconnect)
            guard header == expected else { return mismatch(j, "malformed PLEASE_RECONNECT \(header)", now: now) }
            slots[j].notice = true
            return
        }
        guard slots[j].outstanding else { return mismatch(j, "unsolicited frame \(header)", now: now) }
        let expected = pattern.header(seq: slots[j].seq, uid: slots[j].uid)
        guard header == expected else { return mismatch(j, "reply \(header), expected \(expected)", now: now) }
        if pattern.frameSize == FrameHeader.size { replied(j, now: now) }
    }

    private func replied(_ j: Int, now: UInt64) {
        counts.replies += 1
        slots[j].outstanding = false
        slots[j].received = 0
        if !slots[j].long {
            counts.shortCompleted += 1
            closeSocket(j)
            retire(j, now: now)
        } else if slots[j].phase == .leaving {
            reconnect(j, now: now)
        } else if stopping {
            closeSocket(j)
        } else {
            slots[j].due = true
        }
    }

    private func noticed(_ j: Int, milliseconds: UInt32, now: UInt64) {
        if slots[j].long {
            counts.notices += 1
        } else {
            counts.shortNotices += 1
        }
        let at = now - start
        counts.firstNotice = min(counts.firstNotice ?? at, at)
        counts.lastNotice = max(counts.lastNotice ?? at, at)
        counts.noticeMaxMilliseconds = max(counts.noticeMaxMilliseconds ?? milliseconds, milliseconds)
        counts.noticeMinMilliseconds = min(counts.noticeMinMilliseconds ?? milliseconds, milliseconds)
        // A short connection goes on as it would anyway: it closes once its echo is in.
        guard slots[j].long, slots[j].phase == .open else { return }
        slots[j].due = false
        if slots[j].outstanding {
            slots[j].phase = .leaving
        } else {
            reconnect(j, now: now)
        }
    }

    /// A wrong frame: the stream can no longer be trusted, so the connection starts over.
    private func mismatch(_ j: Int, _ what: String, now: UInt64) {
        counts.mismatched += 1
        note(j, what, now: now)
        // Answered, if wrongly: not lost.
        slots[j].outstanding = false
        closeSocket(j)
        retire(j, now: now)
    }

    private func reconnect(_ j: Int, now: UInt64) {
        closeSocket(j)
        if !stopping { connect(j, now: now) }
    }
}
