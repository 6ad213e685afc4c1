import Glibc
import CLinux
import CTLS

/// Opening, closing and losing connections, and the messages that name each fault.
extension ClientWorker {
    /// How a read loop ended when it did not simply drain the socket.
    enum ReadEnd {
        case closed
        case failed(Int32)
    }

    func openConnection(_ j: Int, now: UInt64) {
        slots[j].connectStarted = now
        var source: sockaddr_in?
        if !sources.isEmpty {
            source = sources[nextSource]
            nextSource = (nextSource + 1) % sources.count
        }
        switch ClientSocket.connect(to: address, from: source, datagram: usesUDP) {
        case .failed(let error):
            connectFailed(j, reason: ClientSocket.describe(error))
        case .started(let fd):
            slots[j].fd = fd
            slots[j].phase = .connecting
            live += 1
            var event = epoll_event()
            event.events = EPOLLIN.rawValue | EPOLLOUT.rawValue | EPOLLRDHUP.rawValue | EPOLLET.rawValue
            event.data.u64 = UInt64(j) | UInt64(slots[j].generation) << 32
            if epoll_ctl(epoll, EPOLL_CTL_ADD, fd, &event) != 0 {
                connectFailed(j, reason: "epoll_ctl: \(ClientSocket.describe(errno))")
            }
        }
    }

    /// The first event on a connecting socket tells whether the connect worked.
    func finishConnect(_ j: Int) {
        let error = ClientSocket.pendingError(slots[j].fd)
        guard error == 0 else {
            connectFailed(j, reason: ClientSocket.describe(error))
            return
        }
        if let tlsContext {
            guard let ssl = gw_tls_new(tlsContext, slots[j].fd, 0, settings.tlsSNI, settings.tlsCA == nil ? nil : settings.tlsSNI)
            else {
                connectFailed(j, reason: "TLS: \(String(cString: gw_tls_last_reason()))")
                return
            }
            slots[j].tls = ssl
            slots[j].handshaking = true
            continueHandshake(j)
            return
        }
        opened(j)
    }

    /// --tls: the handshake goes on at each event until done (then the connection opens) or failed.
    func continueHandshake(_ j: Int) {
        switch gw_tls_handshake(slots[j].tls) {
        case GW_TLS_OK:
            slots[j].handshaking = false
            opened(j)
        case GW_TLS_WANT_READ, GW_TLS_WANT_WRITE:
            return
        case let status:
            connectFailed(j, reason: "TLS handshake: \(status) \(String(cString: gw_tls_last_reason()))")
        }
    }

    private func opened(_ j: Int) {
        if usesWebSocket { return startUpgrade(j) }
        slots[j].phase = .open
        slots[j].writable = true
        open += 1
        onOpen(j, now: MonotonicTime.now())
    }

    /// read(2), or with --tls the decrypted bytes, with read(2)'s answers: -1 and errno EAGAIN when none yet.
    func readBytes(_ j: Int, _ buffer: UnsafeMutableRawPointer, _ count: Int) -> Int {
        guard let ssl = slots[j].tls else { return read(slots[j].fd, buffer, count) }
        var status = GW_TLS_OK
        let n = gw_tls_read(ssl, buffer, count, &status)
        if n > 0 { return n }
        switch status {
        case GW_TLS_WANT_READ, GW_TLS_WANT_WRITE: errno = EAGAIN
        case GW_TLS_CLOSED: return 0
        case GW_TLS_RESET: errno = ECONNRESET
        default: errno = EPROTO
        }
        return -1
    }

    /// send(2), or with --tls the bytes encrypted (a retry after EAGAIN starts with the same bytes:
    /// the requests are regenerated from the same position), with send(2)'s answers.
    func sendBytes(_ j: Int, _ buffer: UnsafeRawPointer, _ count: Int) -> Int {
        guard let ssl = slots[j].tls else { return send(slots[j].fd, buffer, count, Int32(MSG_NOSIGNAL)) }
        var status = GW_TLS_OK
        let n = gw_tls_write(ssl, buffer, count, &status)
        if n > 0 { return n }
        switch status {
        case GW_TLS_WANT_READ, GW_TLS_WANT_WRITE: errno = EAGAIN
        case GW_TLS_CLOSED, GW_TLS_RESET: errno = EPIPE
        default: errno = EPROTO
        }
        return -1
    }

    func connectFailed(_ j: Int, reason: String) {
        result.connectFailures += 1
        result.note("conn \(slots[j].index): connect to \(settings.host):\(settings.port) failed: \(reason)")
        close(j)
    }

    /// Counts an error, names it, and drops the connection: after a bad reply the
    /// stream can no longer be trusted.
    func fault(_ j: Int, _ message: String) {
        result.errors += 1
        result.note(message)
        close(j)
    }

    func serverClosed(_ j: Int, _ end: ReadEnd) {
        let slot = slots[j]
        let how: String
        switch end {
        case .closed: how = "closed by server"
        case .failed(let error) where error == ECONNRESET || error == EPIPE: how = "reset by server"
        case .failed(let error): how = "failed (\(ClientSocket.describe(error)))"
        }
        if settings.mode == .push {
            let when = slot.loggedIn ? "while receiving pushes" : "before its login echo"
            let cut = slot.replyOffset > 0 ? ", \(slot.replyOffset) bytes into a frame" : ""
            fault(j, "conn \(slot.index) (uid \(pushUid(j))): \(how) \(when)\(cut)")
        } else if slot.replyOffset > 0 {
            fault(j, "conn \(slot.index) seq \(slot.expectSeq): short reply, connection \(how) after \(slot.replyOffset) of \(pattern.frameSize) bytes")
        } else if slot.outstanding > 0 {
            fault(j, "conn \(slot.index): \(how) with \(slot.outstanding) requests outstanding (first unanswered seq \(slot.expectSeq))")
        } else if settings.mode == .idle {
            fault(j, "conn \(slot.index): \(how) during the idle hold")
        } else if stopping || slot.budget == 0 {
            close(j)
        } else {
            fault(j, "conn \(slot.index): \(how) with no request outstanding")
        }
    }

    /// Past --duration: connections with nothing outstanding are done. A connect still
    /// pending after the whole duration is a failure (connrate cycles in flight finish).
    func beginStop() {
        stopping = true
        guard settings.mode != .connrate else { return }
        for j in slots.indices {
            switch slots[j].phase {
            case .connecting: connectFailed(j, reason: "not connected within --duration")
            case .open where slots[j].outstanding == 0: close(j)
            default: break
            }
        }
    }

    /// The deadline passed: whatever is still owed is a stall. Idle mode keeps the
    /// connections that answered, to hold them.
    func expire(keepAnswered: Bool) {
        for j in slots.indices {
            let slot = slots[j]
            switch slot.phase {
            case .unused, .finished:
                continue
            case .connecting:
                connectFailed(j, reason: "no connection by the deadline")
            case .open where slot.outstanding > 0:
                fault(j, "conn \(slot.index): server stalled: \(slot.outstanding) requests still unanswered at the "
                    + "deadline (--grace \(Format.fixed(settings.grace, 1)) s; first unanswered seq \(slot.expectSeq))")
            case .open:
                if !keepAnswered { close(j) }
            }
        }
    }

    func close(_ j: Int) {
        switch slots[j].phase {
        case .unused, .finished: return
        case .open: open -= 1
        case .connecting: break
        }
        live -= 1
        if settings.mode == .push && !slots[j].loggedIn { loginsPending -= 1 }
        if let ssl = slots[j].tls { gw_tls_free(ssl) }
        slots[j].tls = nil
        slots[j].handshaking = false
        Glibc.close(slots[j].fd)
        slots[j].fd = -1
        slots[j].phase = .finished
        slots[j].generation &+= 1
        slots[j].writable = false
        // Nothing is owed on a closed connection; connrate reopens the slot from here.
        slots[j].writeSeq = slots[j].nextSeq
        slots[j].writeOffset = 0
        slots[j].expectSeq = slots[j].nextSeq
        slots[j].replyOffset = 0
        if usesWebSocket { resetWebSocket(j) }
        slots[j].udpTokenDue = false
    }
}
