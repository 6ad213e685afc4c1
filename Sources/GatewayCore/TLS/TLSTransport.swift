import Atomics
import CLinux
import CTLS
import Glibc
import Logging

/// TLS on accepted connections (docs/TLS.md). OpenSSL works on the socket itself (SSL_set_fd,
/// read-ahead): Receive's reads become SSL_read into the read block, Send's writev becomes
/// SSL_write of one record's worth gathered from the send ring, and the engine keeps owning
/// readiness, so an SSL call that wants the socket returns at once, as a read or write that
/// would block does. A tls:// listener's handshakes run on the handshake threads (TLSHandshakeStage),
/// which Receive hands each step to, keeping the deadline; links' and wss:// handshakes run on Receive.
///
/// A server connection whose TLS 1.3 handshake is done leaves OpenSSL (gw_tls_detach): its SSL object is
/// freed and the gateway runs its records (tls13_records.h, a slot in `records`), Receive the read half
/// and Send the write half, with no lock. TLS 1.2, links and suites the record layer does not run stay
/// on OpenSSL. An SSL object is never used by two threads at once: before the handshake only the thread
/// running it has it; after, Receive (reading) and Send (writing) take the slot's transport lock around
/// each call, and count how often they found it held.
final class TLSTransport: Transport, @unchecked Sendable {  // shared state: atomics; `scratch` is Send's
    private let context: ManagedAtomic<TLSServerContext>
    /// Each slot's SSL object, by slot index (reserved, touched only when used): made by the handshake before
    /// `transportReady`, then shared under the slot's transport lock, freed at reclamation.
    private let sessions: UnsafeMutablePointer<OpaquePointer?>
    /// Each slot's own record state once OpenSSL has handed the connection over (all zero before), by slot
    /// index (reserved, touched only when used): set by the handshake before `transportReady`; the read half
    /// is Receive's, the write half Send's; wiped at reclamation.
    private let records: UnsafeMutablePointer<gw_rec>
    private let table: ConnectionTable
    private let counters: Counters
    private let logger: Logger
    /// Handshakes begun and not finished, each holding OpenSSL's handshake state: the handshake adds,
    /// and subtracts at the end; the reclaiming thread subtracts for connections closed half way.
    private let handshakes = ManagedAtomic<Int>(0)
    private let maxHandshakes: Int
    /// The handshake's deadline, in ticks.
    let handshakeTicks: UInt64
    /// Send's: plaintext gathered from the ring, one record (16 KiB) at a time.
    private let scratch: UnsafeMutableRawPointer
    private static let recordBytes = 16 << 10
    /// Send's: records sealed by the gateway's record layer, up to four a write.
    private let sealed: UnsafeMutablePointer<UInt8>
    private static let sealedBytes = 4 * GW_REC_MAX_SEALED
    /// Session-ticket keys (servers only), rotated hourly by Monitor's tick.
    let tickets: TicketKeys?

    /// Links: the client side, verifying the upstream's certificate names its address.
    let client: Bool

    init(config: GatewayConfig, table: ConnectionTable, counters: Counters, logger: Logger, client: Bool = false)
        throws(ConfigError) {
        self.client = client
        self.table = table
        let tickets = client ? nil : try TicketKeys(file: config.tls.ticketKeyFile)
        self.tickets = tickets
        context = ManagedAtomic(client
            ? try TLSServerContext(clientCA: config.upstreamCA, certificate: config.upstreamCert, key: config.upstreamKey)
            : try TLSServerContext(config.tls, tickets: tickets!))
        self.counters = counters
        self.logger = logger
        maxHandshakes = config.tlsMaxHandshakes
        let tickMs = UInt64(config.tickMilliseconds)
        handshakeTicks = (UInt64(config.tlsHandshakeTimeout) * 1000 + tickMs - 1) / tickMs
        scratch = .allocate(byteCount: Self.recordBytes, alignment: 16)
        sessions = VirtualMemory.reserve(OpaquePointer?.self, count: table.capacity)
        records = VirtualMemory.reserve(gw_rec.self, count: table.capacity)
        sealed = .allocate(capacity: Self.sealedBytes)
    }

    deinit {
        scratch.deallocate()
        sealed.deallocate()
        VirtualMemory.release(sessions, count: table.capacity)
        for i in 0..<table.capacity where ownsRecords(records + i) { gw_rec_clear(records + i) }
        VirtualMemory.release(records, count: table.capacity)
    }

    func openTicks(_ s: UnsafeMutablePointer<ConnectionSlot>) -> UInt64 { handshakeTicks }
    func openTimeoutCause(_ s: UnsafeMutablePointer<ConnectionSlot>) -> CloseCause { .tlsHandshakeTimeout }

    @inline(__always)
    private func session(_ s: UnsafeMutablePointer<ConnectionSlot>) -> UnsafeMutablePointer<OpaquePointer?> {
        sessions + Int(table.index(of: s))
    }

    @inline(__always)
    private func record(_ s: UnsafeMutablePointer<ConnectionSlot>) -> UnsafeMutablePointer<gw_rec> {
        records + Int(table.index(of: s))
    }

    /// The slot's records are the gateway's (its suite is set).
    @inline(__always)
    private func ownsRecords(_ r: UnsafeMutablePointer<gw_rec>) -> Bool { r.pointee.suite != 0 }

    /// Handshakes in progress (a level, for the stats).
    var handshaking: Int { handshakes.load(ordering: .relaxed) }

    /// A reload: certificates, keys, CAs and the ticket key file read again; on any failure the running
    /// context and keys stay.
    func reload(_ config: GatewayConfig) throws(ConfigError) {
        guard let tickets else {
            context.store(try TLSServerContext(clientCA: config.upstreamCA, certificate: config.upstreamCert,
                                               key: config.upstreamKey), ordering: .releasing)
            return
        }
        let new = try TLSServerContext(config.tls, tickets: tickets)
        try tickets.reload(file: config.tls.ticketKeyFile)
        context.store(new, ordering: .releasing)
    }

    /// Monitor's: the wall-clock hour the ticket keys were last advanced to.
    private var ticketEpoch: UInt64 = 0

    /// Monitor, each tick: a new hour rotates the ticket keys.
    func tick() {
        guard let tickets else { return }
        let epoch = TicketKeys.epoch(at: time(nil))
        guard epoch != ticketEpoch else { return }
        ticketEpoch = epoch
        tickets.advance(to: epoch)
    }

    /// The handshake threads (TLSHandshakeStage), servers only; empty: the handshake runs on Receive.
    /// Set once by the engine before any thread starts.
    private(set) var stages: [TLSHandshakeStage] = []

    func attach(_ stages: [TLSHandshakeStage]) { self.stages = stages }

    func open(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) -> TransportOpening {
        if s.transportIsReady { return .ready }  // a handshake thread finished it
        if !stages.isEmpty {
            stages[Int(id.index) % stages.count].input.post(s, id)
            return .handedOff
        }
        let opening = handshake(s)
        if case .ready = opening { s.atomic(\.transportReady).store(1, ordering: .releasing) }
        return opening
    }

    /// The handshake's next step (on the connection's handshake thread, or Receive for links and wss://),
    /// `.ready` once it is done, without marking the connection ready: WebSocket over TLS opens its own
    /// protocol next (WebSocketTransport).
    func handshake(_ s: UnsafeMutablePointer<ConnectionSlot>) -> TransportOpening {
        let ssl: OpaquePointer
        if let existing = session(s).pointee {
            ssl = existing
        } else {
            switch begin(s) {
            case .started(let created): ssl = created
            case .notYet(let outcome): return outcome
            }
        }
        switch gw_tls_handshake(ssl) {
        case GW_TLS_OK:
            handshakes.wrappingDecrement(ordering: .relaxed)
            counters.addShared(.tlsHandshakes)
            if gw_tls_resumed(ssl) != 0 { counters.addShared(.tlsResumed) }
            // TLS 1.3 on a server: the gateway runs the records from here, and OpenSSL's 7-14 KB go.
            if !client, gw_tls_detach(ssl, record(s)) == 1 {
                session(s).pointee = nil
                gw_tls_free(ssl)
                counters.addShared(.tlsOwnRecords)
            }
            return .ready
        case GW_TLS_WANT_READ:
            return .pending
        case GW_TLS_WANT_WRITE:
            return .retry
        case GW_TLS_CLOSED, GW_TLS_RESET:
            logger.debug("closing \(s.pointee.monitor.peer): it left half way through the TLS handshake")
            return .failed(.tlsHandshake)
        case GW_TLS_IO:
            return .failed(.ioError)
        case let status:
            let cause: CloseCause = status == GW_TLS_VERSION ? .tlsVersion
                : status == GW_TLS_CERTIFICATE ? .tlsCertificate : .tlsHandshake
            logger.debug("closing \(s.pointee.monitor.peer): TLS handshake failed (\(cause)): \(lastReason)")
            return .failed(cause)
        }
    }

    /// The first bytes: a TLS handshake record (0x16), or the connection is closed as not TLS. Only
    /// then is OpenSSL's state allocated, so a silent connection costs nothing but its slot.
    private enum Beginning {
        case started(OpaquePointer)
        case notYet(TransportOpening)
    }

    private func begin(_ s: UnsafeMutablePointer<ConnectionSlot>) -> Beginning {
        if client {
            handshakes.wrappingIncrement(ordering: .relaxed)
            return start(s, serverName: s.pointee.monitor.peer.host)
        }
        var first: UInt8 = 0
        let n = recv(s.pointee.monitor.fd, &first, 1, Int32(MSG_PEEK))
        if n == 0 { return .notYet(.failed(.peer)) }  // connected and left without a word
        if n < 0 {
            let e = gw_errno()
            if e == EAGAIN || e == EWOULDBLOCK || e == EINTR { return .notYet(.pending) }
            return .notYet(.failed(e == ECONNRESET ? .peer : .ioError))
        }
        guard first == 0x16 else {
            logger.debug("closing \(s.pointee.monitor.peer): first byte \(first) on a TLS listener is not a handshake")
            return .notYet(.failed(.tlsPlaintext))
        }
        // Taken before it is checked: handshake threads begin handshakes at once, and none may pass the cap.
        guard handshakes.loadThenWrappingIncrement(ordering: .relaxed) < maxHandshakes else {
            handshakes.wrappingDecrement(ordering: .relaxed)
            logger.debug("closing \(s.pointee.monitor.peer): \(maxHandshakes) TLS handshakes already in progress")
            return .notYet(.failed(.tlsMaxHandshakes))
        }
        return start(s, serverName: nil)
    }

    /// With a handshake counted in `handshakes`. A client checks the server's certificate against
    /// `serverName` (a link's upstream address).
    private func start(_ s: UnsafeMutablePointer<ConnectionSlot>, serverName: String?) -> Beginning {
        let ssl = gw_tls_new(context.load(ordering: .acquiring).pointer, s.pointee.monitor.fd, client ? 0 : 1, nil,
                             serverName)
        guard let ssl else {
            handshakes.wrappingDecrement(ordering: .relaxed)
            logger.error("closing \(s.pointee.monitor.peer): cannot start TLS: \(lastReason)")
            return .notYet(.failed(.ioError))
        }
        session(s).pointee = ssl
        return .started(ssl)
    }

    func read(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>, into buffer: UnsafeMutableRawPointer,
              count: Int) -> TransportRead {
        let r = record(s)
        if ownsRecords(r) {
            var status = GW_REC_OK
            let n = gw_rec_read(r, s.pointee.monitor.fd, buffer.assumingMemoryBound(to: UInt8.self), count, &status)
            if n > 0 { return .bytes(n) }
            switch status {
            case GW_REC_WANT_READ: return .wouldBlock
            case GW_REC_CLOSED: return .end
            case GW_REC_RESET: return .failed(.peer)
            case GW_REC_IO: return .failed(.ioError)
            default:
                let what = status == GW_REC_BAD_RECORD ? "a record that fails authentication"
                    : status == GW_REC_ALERT ? "a fatal alert" : "an unexpected or malformed record"
                logger.debug("closing \(s.pointee.monitor.peer): TLS: \(what)")
                return .failed(.tlsRecord)
            }
        }
        if s.lockTransport() { counters.add(.tlsReceiveWaits) }
        counters.add(.tlsReceiveLocks)
        var status = GW_TLS_OK
        let n = gw_tls_read(session(s).pointee, buffer, count, &status)
        s.unlockTransport()
        if n > 0 { return .bytes(n) }
        switch status {
        case GW_TLS_WANT_READ, GW_TLS_WANT_WRITE: return .wouldBlock
        case GW_TLS_CLOSED: return .end
        case GW_TLS_RESET: return .failed(.peer)
        case GW_TLS_IO: return .failed(.ioError)
        default:
            logger.debug("closing \(s.pointee.monitor.peer): TLS record error: \(lastReason)")
            return .failed(.tlsRecord)
        }
    }

    func write(_ s: UnsafeMutablePointer<ConnectionSlot>, _ iov: UnsafePointer<iovec>, count: Int) -> TransportWrite {
        let r = record(s)
        if ownsRecords(r) {
            var held = false
            return writeRecords(s, r, iov, count: count, held: &held)
        }
        if s.lockTransport() { counters.add(.tlsSendWaits) }
        counters.add(.tlsSendLocks)
        defer { s.unlockTransport() }
        var held = false
        return write(s, iov, count: count, held: &held)
    }

    /// Send, with the slot's transport lock held (by `write`, or by WebSocket over TLS): the front of the
    /// iovecs, a record at a time. `held` is set when OpenSSL kept a record it could not write, whose bytes
    /// (the first not taken) must begin the next call.
    func write(_ s: UnsafeMutablePointer<ConnectionSlot>, _ iov: UnsafePointer<iovec>, count: Int,
               held: inout Bool) -> TransportWrite {
        let r = record(s)
        if ownsRecords(r) { return writeRecords(s, r, iov, count: count, held: &held) }
        let ssl = session(s).pointee
        held = false
        var taken = 0
        var index = 0
        var offset = 0
        while index < count {
            // A record's bytes: straight from the ring when one descriptor holds them all (an echoed run
            // of frames is one), else gathered into the scratch. After a write that wanted room, the
            // ring still begins with the bytes it was given (they are popped only once taken) and holds
            // at least as many, so the retry offers them again, and no fewer (as OpenSSL requires).
            let first = iov[index].iov_len - offset
            let record: UnsafeRawPointer
            var filled = 0
            if first >= Self.recordBytes || index == count - 1 {
                record = UnsafeRawPointer(iov[index].iov_base! + offset)
                filled = min(first, Self.recordBytes)
            } else {
                var (i, o) = (index, offset)
                while i < count, filled < Self.recordBytes {
                    let chunk = min(iov[i].iov_len - o, Self.recordBytes - filled)
                    memcpy(scratch + filled, iov[i].iov_base + o, chunk)
                    filled += chunk
                    o += chunk
                    if o == iov[i].iov_len { (i, o) = (i + 1, 0) }
                }
                record = UnsafeRawPointer(scratch)
            }
            var status = GW_TLS_OK
            let n = gw_tls_write(ssl, record, filled, &status)
            guard n > 0 else {
                switch status {
                case GW_TLS_WANT_WRITE, GW_TLS_WANT_READ:
                    held = true
                    return .wrote(taken)
                case GW_TLS_CLOSED, GW_TLS_RESET: return .failed(.peer)
                case GW_TLS_IO: return .failed(.ioError)
                default:
                    logger.debug("closing \(s.pointee.monitor.peer): TLS write failed: \(lastReason)")
                    return .failed(.tlsRecord)
                }
            }
            taken += n
            var left = n
            while left > 0 {
                let step = min(iov[index].iov_len - offset, left)
                left -= step
                offset += step
                if offset == iov[index].iov_len { (index, offset) = (index + 1, 0) }
            }
        }
        return .wrote(taken)
    }

    /// Send, on the gateway's records: as `write(_:_:count:held:)`, `held` while a record is partly written
    /// (the next call must begin with its bytes, which the record layer seals again under the same number).
    private func writeRecords(_ s: UnsafeMutablePointer<ConnectionSlot>, _ r: UnsafeMutablePointer<gw_rec>,
                              _ iov: UnsafePointer<iovec>, count: Int, held: inout Bool) -> TransportWrite {
        var status = GW_REC_OK
        let n = gw_rec_write(r, s.pointee.monitor.fd, iov, Int32(count), sealed, Self.sealedBytes, &status)
        held = gw_rec_holds_partial(r) != 0
        if n >= 0 { return .wrote(n) }
        return .failed(status == GW_REC_RESET ? .peer : .ioError)
    }

    /// A few bytes (a WebSocket close frame), best effort, with the transport lock held: true if taken.
    func writeSmall(_ s: UnsafeMutablePointer<ConnectionSlot>, _ bytes: UnsafeRawPointer, count: Int) -> Bool {
        let r = record(s)
        if ownsRecords(r) { return gw_rec_write_small(r, s.pointee.monitor.fd, bytes, count) == 1 }
        var status = GW_TLS_OK
        return gw_tls_write(session(s).pointee, bytes, count, &status) == count
    }

    func finish(_ s: UnsafeMutablePointer<ConnectionSlot>, cause: CloseCause) {
        guard s.transportIsReady else { return }
        let r = record(s)
        if ownsRecords(r) { return gw_rec_close_notify(r, s.pointee.monitor.fd) }
        if s.lockTransport() { counters.add(.tlsSendWaits) }
        counters.add(.tlsSendLocks)
        gw_tls_close_notify(session(s).pointee)
        s.unlockTransport()
    }

    func release(_ s: UnsafeMutablePointer<ConnectionSlot>, index: UInt32) {
        release(index: index, handshakeDone: s.transportIsReady)
    }

    /// Frees the slot's SSL object; a handshake that never finished leaves the count of those in progress.
    /// (Whether it finished is the caller's record, not OpenSSL's state, which a later alert can undo.)
    func release(index: UInt32, handshakeDone: Bool) {
        let r = records + Int(index)
        if ownsRecords(r) { gw_rec_clear(r) }
        let slot = sessions + Int(index)
        guard let ssl = slot.pointee else { return }
        if !handshakeDone { handshakes.wrappingDecrement(ordering: .relaxed) }
        gw_tls_free(ssl)
        slot.pointee = nil
    }

    private var lastReason: String { String(cString: gw_tls_last_reason()) }
}
