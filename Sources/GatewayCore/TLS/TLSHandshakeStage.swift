/// One of the threads TLS listeners' handshakes run on (`tls_handshake_threads`, docs/TLS.md).
///
/// A full handshake costs a few hundred microseconds of crypto (the ECDSA signature, X25519, the ticket),
/// a thousand times a record's. On one thread the handshake rate is one core's worth, and Receive's records
/// wait behind every handshake; so Receive hands each step of a tls:// connection's handshake to handshake
/// thread (slot index % N) and goes on. Receive keeps the opening's deadline (its wheel); this stage owns
/// the SSL object until `transportReady`, then hands the connection back to Receive (inline when Receive
/// sleeps, as the stages do), which switches to the idle timer and reads the first records.
///
/// Per-connection order holds because a connection always goes to the same stage and a stage runs on one
/// thread at a time (its token); the slot's `handshakeGate` keeps it in the inbox at most once.
final class TLSHandshakeStage: StageWorker, @unchecked Sendable {  // runs on its own thread; shared state is atomic
    let input: StageInbox
    unowned(unsafe) let engine: Engine
    let table: ConnectionTable
    private unowned(unsafe) let tls: TLSTransport
    private unowned(unsafe) let poller: Poller
    @exclusivity(unchecked) var inlineAllowance = 0
    /// Handshakes are not run inline by other stages (they always post here), so nothing is charged.
    let bytesMoved = 0
    /// Connections whose handshake flight wanted room in the socket: tried again at the next tick.
    @exclusivity(unchecked) private var waitingForRoom: [ConnectionID] = []

    init(engine: Engine, tls: TLSTransport, index: Int) {
        self.engine = engine
        self.tls = tls
        table = engine.table
        poller = engine.poller
        input = StageInbox(name: "tls-\(index)", gate: \.handshakeGate, capacity: engine.inboxCapacity)
    }

    func service(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) {
        guard !s.transportIsReady else { return }  // done already: a post from before the end
        switch tls.handshake(s) {
        case .ready:
            s.atomic(\.transportReady).store(1, ordering: .releasing)
            engine.receive.postOrRun(s, id, allowance: &inlineAllowance)
        case .pending, .handedOff:
            poller.resumeReading(id.packed)
        case .retry:
            waitingForRoom.append(id)
            input.armedTimers.store(waitingForRoom.count, ordering: .relaxed)
        case .failed(let cause):
            engine.requestClose(id, cause: cause)
        }
    }

    func batchDone() { poller.applyInterest() }

    /// Each tick: the handshakes that wanted room go again (a closed one is skipped by `dispatch`);
    /// Receive's deadline bounds how long.
    func advanceTimers(to tick: UInt64) {
        guard !waitingForRoom.isEmpty else { return }
        let again = waitingForRoom
        waitingForRoom.removeAll(keepingCapacity: true)
        input.armedTimers.store(0, ordering: .relaxed)
        for id in again { input.post(table.slot(id.index), id) }
    }
}
