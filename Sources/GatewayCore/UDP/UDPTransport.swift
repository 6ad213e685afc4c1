import Atomics
import CLinux
import Glibc

/// UDP sessions behind the transport seam (docs/UDP.md). To Deal and the links a UDP session is a
/// slot like any other, of transport kind `udp`, with no descriptor of its own (`fd` is -1): Monitor
/// reads the shared socket (UDPReceiver) and queues each session's datagrams here; Receive's `read`
/// takes them as a stream of whole frames; Send's `write` packs the send ring's frames into datagrams
/// (DatagramPacker) that leave in batches (UDPSendBatch). The session's idle timer is Receive's, with
/// `udp_idle_timeout`.
final class UDPTransport: Transport, @unchecked Sendable {  // per-session fields have owners (UDPSession.swift)
    let sessions: UnsafeMutablePointer<UDPSession>
    let queues: UnsafeMutablePointer<UDPQueueEntry>
    private let capacity: Int
    let counters = UDPCounters()
    let pool: ChunkPool
    /// Send's.
    let batch: UDPSendBatch
    private let packer: DatagramPacker
    private unowned(unsafe) let engine: Engine
    /// A session's budget before it proves its address: this many times the bytes it sent (the issue's
    /// and QUIC's factor).
    static let amplificationFactor: UInt64 = 3

    init(engine: Engine, capacity: Int) {
        self.engine = engine
        self.capacity = capacity
        pool = engine.pool
        sessions = VirtualMemory.reserve(UDPSession.self, count: capacity)
        queues = VirtualMemory.reserve(UDPQueueEntry.self, count: capacity * UDPSession.queueCapacity)
        packer = DatagramPacker(maxPayload: engine.config.udpMaxDatagram)
        batch = UDPSendBatch(maxPayload: engine.config.udpMaxDatagram, counters: counters)
    }

    deinit {
        VirtualMemory.release(sessions, count: capacity)
        VirtualMemory.release(queues, count: capacity * UDPSession.queueCapacity)
    }

    /// No opening: Monitor opens a session ready, so these are never asked.
    func openTicks(_ s: UnsafeMutablePointer<ConnectionSlot>) -> UInt64 { 0 }
    func openTimeoutCause(_ s: UnsafeMutablePointer<ConnectionSlot>) -> CloseCause { .ioError }

    @inline(__always)
    func session(_ index: UInt32) -> UnsafeMutablePointer<UDPSession> { sessions + Int(index) }

    @inline(__always)
    private func session(_ s: UnsafeMutablePointer<ConnectionSlot>) -> UnsafeMutablePointer<UDPSession> {
        sessions + Int(engine.table.index(of: s))
    }

    func open(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) -> TransportOpening { .ready }

    // MARK: Monitor: queueing a datagram

    /// Copies a datagram's frames into the session's queue; false when the queue is full (dropped).
    func enqueue(_ index: UInt32, _ bytes: UnsafeRawPointer, count: Int) -> Bool {
        let u = session(index)
        let tail = u.atomic(\.tail).load(ordering: .relaxed)
        guard tail &- u.atomic(\.head).load(ordering: .acquiring) < UInt32(UDPSession.queueCapacity) else {
            return false
        }
        let chunk = pool.allocate(capacity: count)
        chunk.bytes.copyMemory(from: bytes, byteCount: count)
        queues[Int(index) * UDPSession.queueCapacity + Int(tail % UInt32(UDPSession.queueCapacity))] =
            UDPQueueEntry(chunk: chunk.base, length: UInt32(count))
        u.atomic(\.tail).store(tail &+ 1, ordering: .releasing)
        return true
    }

    // MARK: Receive: frames in

    func read(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>, into buffer: UnsafeMutableRawPointer,
              count: Int) -> TransportRead {
        let u = session(id.index)
        var head = u.atomic(\.head).load(ordering: .relaxed)
        let tail = u.atomic(\.tail).load(ordering: .acquiring)
        var n = 0
        // Whole datagrams while they fit; one bigger than the room is read in parts (the frames cut by
        // the boundary are assembled as from any stream).
        while head != tail && n < count {
            let entry = queues + Int(id.index) * UDPSession.queueCapacity + Int(head % UInt32(UDPSession.queueCapacity))
            let chunk = Chunk(entry.pointee.chunk!)
            let offset = Int(u.pointee.readOffset)
            let take = min(Int(entry.pointee.length) - offset, count - n)
            (buffer + n).copyMemory(from: chunk.bytes + offset, byteCount: take)
            n += take
            if offset + take < Int(entry.pointee.length) {
                u.pointee.readOffset = UInt32(offset + take)
                break
            }
            u.pointee.readOffset = 0
            entry.pointee.chunk = nil
            pool.release(chunk)
            head &+= 1
            u.atomic(\.head).store(head, ordering: .releasing)
        }
        return n > 0 ? .bytes(n) : .wouldBlock
    }

    // MARK: Send: frames out

    func write(_ s: UnsafeMutablePointer<ConnectionSlot>, _ iov: UnsafePointer<iovec>, count: Int) -> TransportWrite {
        let u = session(s)
        var total = 0
        for i in 0..<count { total += iov[i].iov_len }
        let proven = u.proven.load(ordering: .acquiring) != 0
        var sink = UDPSendBatch.Sink(batch: batch, session: u, proven: proven,
                                     budget: u.received.load(ordering: .relaxed) &* Self.amplificationFactor)
        let tooLarge = packer.pack(iov, count: count, stream: &u.pointee.stream, token: proven ? nil : u.pointee.token,
                                   pool: pool, into: &sink)
        if tooLarge > 0 { counters.add(.tooLarge, UInt64(tooLarge)) }
        return .wrote(total)
    }

    /// No goodbye on UDP: the session simply ends.
    func finish(_ s: UnsafeMutablePointer<ConnectionSlot>, cause: CloseCause) {}

    func release(_ s: UnsafeMutablePointer<ConnectionSlot>, index: UInt32) {
        let u = session(index)
        var head = u.atomic(\.head).load(ordering: .relaxed)
        let tail = u.atomic(\.tail).load(ordering: .acquiring)
        while head != tail {
            let entry = queues + Int(index) * UDPSession.queueCapacity + Int(head % UInt32(UDPSession.queueCapacity))
            if let chunk = entry.pointee.chunk { pool.release(Chunk(chunk)) }
            entry.pointee.chunk = nil
            head &+= 1
        }
        packer.dropCarry(&u.pointee.stream, pool)
        UnsafeMutableRawPointer(u).initializeMemory(as: UInt8.self, repeating: 0, count: MemoryLayout<UDPSession>.stride)
    }
}
