// The stage hand-off measured against an alternative: the engine's Inbox (a
// spinlock-guarded double buffer of ids that the one consumer swaps out whole)
// and liburcu's wait-free concurrent queue (cds_wfcq) used intrusively, with one
// preallocated node per connection, spliced out whole by the one consumer.
//
// Both move connections the way a stage's inbox does: each connection has an
// event gate (closed by the producer before it posts, opened by the consumer
// when it takes the id), so a connection is queued at most once; a producer
// that finds a gate still closed waits for it here (the engine would drop the
// post) so that every benchmark moves an exact, checked number of ids.
// Run from perf/:  swift package --disable-sandbox benchmark --target GatewayBenchmarks --filter 'Queue.*'
import Benchmark
import CURCU
@_spi(Benchmarks) import GatewayCore
import Glibc
import Synchronization

/// The figure to compare across variants: wall time over ids the consumer took
/// during the iteration, whichever thread posted them.
private let psPerID = BenchmarkMetric.custom("ps per id moved (all producers)", polarity: .prefersSmaller,
                                             useScalingFactor: false)

/// Waits that should end within microseconds give up after this long: a broken queue fails the run, not hangs it.
private let stallLimitNanos: UInt64 = 30_000_000_000

@inline(__always)
private func nowNanos() -> UInt64 {
    var ts = timespec()
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec)
}

// MARK: - connections

/// Connections as a stage's hand-off sees them, one cache line each as in the
/// engine's slot table: the gate (offset 0), the wfcq node (8), the packed id (16).
private final class QueueConns: @unchecked Sendable {  // gates are atomics; node and id belong to whoever holds the gate
    static let stride = 64
    static let nodeOffset = 8
    static let idOffset = 16
    let base: UnsafeMutableRawPointer
    let count: Int

    init(count: Int) {
        self.count = count
        base = .allocate(byteCount: count * Self.stride, alignment: 64)
        base.initializeMemory(as: UInt8.self, repeating: 0, count: count * Self.stride)
        for i in 0..<count {
            let slot = base + i * Self.stride
            slot.bindMemory(to: Atomic<UInt8>.self, capacity: 1).initialize(to: Atomic(0))
            (slot + Self.nodeOffset).bindMemory(to: cds_wfcq_node.self, capacity: 1).initialize(to: cds_wfcq_node(next: nil))
            // Index in the low half, a generation in the high half, as ConnectionID packs them.
            (slot + Self.idOffset).bindMemory(to: UInt64.self, capacity: 1).initialize(to: UInt64(i) | (7 << 32))
        }
    }

    deinit { base.deallocate() }

    @inline(__always) func gate(_ i: Int) -> UnsafeMutablePointer<Atomic<UInt8>> {
        (base + i &* Self.stride).assumingMemoryBound(to: Atomic<UInt8>.self)
    }

    @inline(__always) func node(_ i: Int) -> UnsafeMutablePointer<cds_wfcq_node> {
        (base + i &* Self.stride + Self.nodeOffset).assumingMemoryBound(to: cds_wfcq_node.self)
    }

    @inline(__always) func id(_ i: Int) -> UInt64 {
        (base + i &* Self.stride + Self.idOffset).assumingMemoryBound(to: UInt64.self).pointee
    }

    /// The connection a node belongs to (what `caa_container_of` does in C).
    @inline(__always) func index(of node: UnsafeMutablePointer<cds_wfcq_node>) -> Int {
        (UnsafeMutableRawPointer(node) - Self.nodeOffset - base) / Self.stride
    }

    /// True when every gate is open again (every id posted was taken).
    var allGatesOpen: Bool { (0..<count).allSatisfy { gate($0).pointee.load(ordering: .acquiring) == 0 } }
}

// MARK: - the two hand-offs

/// Many producers post, one consumer drains.
private protocol HandOff: AnyObject, Sendable {
    init(conns: QueueConns)
    /// Queues connection `i`; true on the empty-to-non-empty edge (where the engine rings).
    func post(_ i: Int) -> Bool
    /// Consumer only: takes everything queued so far, hands each connection index to `body`, returns how many.
    func drain(_ body: (Int) -> Void) -> Int
}

/// The engine's inbox, holding packed ids; the consumer maps an id back to its slot as a stage does.
private final class InboxHandOff: HandOff, @unchecked Sendable {  // Inbox is thread-safe; conns is shared by design
    let conns: QueueConns
    let inbox: Inbox

    init(conns: QueueConns) {
        self.conns = conns
        inbox = Inbox(capacity: conns.count + 1024)
    }

    @inline(__always) func post(_ i: Int) -> Bool { inbox.push(conns.id(i)) }

    @inline(__always) func drain(_ body: (Int) -> Void) -> Int {
        inbox.drain { id in body(Int(truncatingIfNeeded: id & 0xFFFF_FFFF)) }
    }
}

/// cds_wfcq, intrusive: producers enqueue the connection's own node (wait-free:
/// one exchange on the tail and one store); the consumer splices the whole queue
/// onto a private one (one exchange) and walks it with first/next.
private final class WfcqHandOff: HandOff, @unchecked Sendable {  // head and tail are used through liburcu's atomics; the private queue is the consumer's
    let conns: QueueConns
    private let block: UnsafeMutableRawPointer
    private let head: UnsafeMutablePointer<__cds_wfcq_head>
    private let tail: UnsafeMutablePointer<cds_wfcq_tail>
    private let localHead: UnsafeMutablePointer<__cds_wfcq_head>
    private let localTail: UnsafeMutablePointer<cds_wfcq_tail>

    init(conns: QueueConns) {
        self.conns = conns
        // Head, tail and the consumer's private queue 128 bytes apart (the header's advice: no
        // false sharing between enqueue and dequeue; 128 for the adjacent-line prefetcher).
        block = .allocate(byteCount: 384, alignment: 128)
        head = block.bindMemory(to: __cds_wfcq_head.self, capacity: 1)
        tail = (block + 128).bindMemory(to: cds_wfcq_tail.self, capacity: 1)
        localHead = (block + 256).bindMemory(to: __cds_wfcq_head.self, capacity: 1)
        localTail = (block + 256 + 64).bindMemory(to: cds_wfcq_tail.self, capacity: 1)
        gw_wfcq_init(head, tail)
        gw_wfcq_init(localHead, localTail)
    }

    deinit { block.deallocate() }

    @inline(__always) func post(_ i: Int) -> Bool { gw_wfcq_enqueue(head, tail, conns.node(i)) }

    @inline(__always) func drain(_ body: (Int) -> Void) -> Int {
        if gw_wfcq_splice(localHead, localTail, head, tail) == CDS_WFCQ_RET_SRC_EMPTY { return 0 }
        var n = 0
        var node = gw_wfcq_first(localHead, localTail)
        while let current = node {
            // Read the link and clear it before `body` opens the gate: after that a producer may enqueue this node again.
            node = gw_wfcq_next(localHead, localTail, current)
            current.pointee.next = nil
            body(conns.index(of: current))
            n &+= 1
        }
        gw_wfcq_init(localHead, localTail)
        return n
    }
}

// MARK: - producers and the consumer

/// What one producer did, checked against what the consumer saw.
private struct Posted {
    var count = 0
    var sum: UInt64 = 0
    var edges = 0
}

/// Posts connections `first..<first+count`, each once: closes its gate (waiting,
/// yielding, if the consumer has not taken it from the previous round yet), then posts it.
@inline(__always)
private func postBatch<Q: HandOff>(_ q: Q, _ conns: QueueConns, first: Int, count: Int, into posted: inout Posted) {
    for i in first..<(first &+ count) {
        let gate = conns.gate(i)
        if gate.pointee.exchange(1, ordering: .acquiringAndReleasing) != 0 { waitAndClose(gate, i) }
        if q.post(i) { posted.edges &+= 1 }
        posted.count &+= 1
        posted.sum &+= conns.id(i)
    }
}

@inline(never)
private func waitAndClose(_ gate: UnsafeMutablePointer<Atomic<UInt8>>, _ i: Int) {
    var spins: UInt64 = 0
    let start = nowNanos()
    repeat {
        while gate.pointee.load(ordering: .relaxed) != 0 {
            spins &+= 1
            if spins & 63 == 0 { sched_yield() }
            if spins & 0xFFFF == 0 {
                precondition(nowNanos() &- start < stallLimitNanos, "gate of connection \(i) never reopened: the consumer lost it")
            }
        }
    } while gate.pointee.exchange(1, ordering: .acquiringAndReleasing) != 0
}

/// The stage thread: drains whenever there is something, yields after a short
/// empty spin (two cores), and after `stop` drains once more and exits.
private final class QueueConsumer<Q: HandOff>: @unchecked Sendable {  // `total`/`sum` are read only after join
    let stop = Atomic<Bool>(false)
    /// Ids taken so far, published after every drain (for the per-id figure).
    let taken = Atomic<Int>(0)
    private(set) var total = 0
    private(set) var sum: UInt64 = 0
    private var thread: Joinable?

    init(_ q: Q, _ conns: QueueConns) {
        thread = Joinable { [self] in run(q, conns) }
    }

    private func run(_ q: Q, _ conns: QueueConns) {
        var total = 0
        var sum: UInt64 = 0
        var idle: UInt64 = 0
        var idleSince: UInt64 = 0
        var stopping = false
        while true {
            let n = q.drain { i in
                let gate = conns.gate(i)
                precondition(gate.pointee.load(ordering: .relaxed) == 1, "connection \(i) taken while its gate was open")
                sum &+= conns.id(i)
                gate.pointee.store(0, ordering: .sequentiallyConsistent)
            }
            if n > 0 {
                total &+= n
                taken.store(total, ordering: .releasing)
                idle = 0
            } else if stopping {
                break
            } else if stop.load(ordering: .acquiring) {
                stopping = true  // the producers have finished: one more drain sees all they posted
            } else {
                idle &+= 1
                if idle >= 64 { sched_yield() }
                if idle == 64 { idleSince = nowNanos() }
                if idle & 0xFFFF == 0 {
                    precondition(nowNanos() &- idleSince < stallLimitNanos, "consumer idle for 30 s: no stop came")
                }
            }
        }
        self.total = total
        self.sum = sum
    }

    func shutdown() {
        stop.store(true, ordering: .releasing)
        thread?.join()
        thread = nil
    }
}

/// One consumer thread, the benchmark thread as producer 0 and `producers - 1`
/// helper threads posting their own `batch` connections round after round until stopped.
private final class QueueRig<Q: HandOff>: @unchecked Sendable {  // `main` is the benchmark thread's; helpers' tallies are read after join
    let conns: QueueConns
    let queue: Q
    let consumer: QueueConsumer<Q>
    let batch: Int
    var main = Posted()
    private let stopHelpers = Atomic<Bool>(false)
    private var helpers: [Joinable] = []
    private let helperPosted: UnsafeMutablePointer<Posted>

    init(batch: Int, producers: Int) {
        self.batch = batch
        conns = QueueConns(count: batch * producers)
        queue = Q(conns: conns)
        consumer = QueueConsumer(queue, conns)
        helperPosted = .allocate(capacity: max(producers - 1, 1))
        helperPosted.initialize(repeating: Posted(), count: max(producers - 1, 1))
        let maxRounds = 2_000_000_000 / batch  // a bound, never reached in a 1 s benchmark
        for p in 1..<max(producers, 1) {
            let out = helperPosted + (p - 1)
            helpers.append(Joinable { [self] in
                var posted = Posted()
                var rounds = 0
                while !stopHelpers.load(ordering: .relaxed), rounds < maxRounds {
                    postBatch(queue, conns, first: p * batch, count: batch, into: &posted)
                    rounds &+= 1
                }
                out.pointee = posted
            })
        }
    }

    /// Stops everything and checks that every id posted was taken exactly once.
    func shutdown(_ name: String) {
        stopHelpers.store(true, ordering: .relaxed)
        for h in helpers { h.join() }
        consumer.shutdown()
        var all = main
        for p in 0..<helpers.count {
            all.count &+= helperPosted[p].count
            all.sum &+= helperPosted[p].sum
            all.edges &+= helperPosted[p].edges
        }
        precondition(all.count > 0 && all.edges > 0, "\(name): nothing posted")
        precondition(consumer.total == all.count, "\(name): \(all.count) ids posted, \(consumer.total) taken")
        precondition(consumer.sum == all.sum, "\(name): checksum of ids taken differs from ids posted")
        precondition(conns.allGatesOpen, "\(name): a gate is still closed after the final drain")
        helperPosted.deallocate()
    }
}

private final class RigBox<Q: HandOff>: @unchecked Sendable {  // set in setup, used by the benchmark thread, cleared in teardown
    var rig: QueueRig<Q>?
}

// MARK: - registration

/// Batches of `batch` connections from `producers` threads (the benchmark thread is
/// one of them) into one consumer thread. Per scaled iteration: one batch from the
/// benchmark thread; the custom metric counts every id the consumer took, from all producers.
private func registerCrossThread<Q: HandOff>(_: Q.Type, _ name: String, batch: Int, producers: Int) {
    let box = RigBox<Q>()
    Benchmark(name,
              configuration: .init(metrics: [.wallClock, .mallocCountTotal, psPerID],
                                   warmupIterations: 5, scalingFactor: .kilo, maxDuration: .seconds(1),
                                   maxIterations: 100_000,
                                   setup: { box.rig = QueueRig<Q>(batch: batch, producers: producers) },
                                   teardown: { box.rig?.shutdown(name); box.rig = nil })) { benchmark in
        let rig = box.rig!
        let before = rig.consumer.taken.load(ordering: .acquiring)
        let start = nowNanos()
        for _ in benchmark.scaledIterations {
            postBatch(rig.queue, rig.conns, first: 0, count: batch, into: &rig.main)
        }
        let elapsed = nowNanos() &- start
        let moved = rig.consumer.taken.load(ordering: .acquiring) &- before
        precondition(moved > 0, "\(name): the consumer took nothing in a whole iteration")
        benchmark.measurement(psPerID, Int(elapsed &* 1000 / UInt64(moved)))
    }
}

/// One thread posts 1024 connections and drains them: the bare queue cost, no
/// gates, no other thread. Per scaled iteration: 1024 posts + one drain of 1024.
private func registerSingleThread<Q: HandOff>(_: Q.Type, _ name: String) {
    let count = 1024
    let conns = QueueConns(count: count)
    let queue = Q(conns: conns)
    Benchmark(name,
              configuration: .init(metrics: [.wallClock, .mallocCountTotal, psPerID],
                                   warmupIterations: 10, scalingFactor: .one, maxDuration: .seconds(1),
                                   maxIterations: 1_000_000)) { benchmark in
        for _ in benchmark.scaledIterations {
            let start = nowNanos()
            var edges = 0
            for i in 0..<count where queue.post(i) { edges &+= 1 }
            var sum = 0
            let n = queue.drain { i in sum &+= i }
            let elapsed = nowNanos() &- start
            precondition(n == count && sum == count * (count - 1) / 2, "\(name): drained \(n) of \(count)")
            precondition(edges == 1, "\(name): \(edges) empty-to-non-empty edges, expected 1")
            benchmark.measurement(psPerID, Int(elapsed &* 1000 / UInt64(count)))
        }
    }
}

/// Inbox against intrusive wfcq as a stage's hand-off; called from `benchmarks`.
func registerQueueBenchmarks() {
    for batch in [1, 8, 64] {
        registerCrossThread(InboxHandOff.self, "Queue.1P1C Inbox, batches of \(batch)", batch: batch, producers: 1)
        registerCrossThread(WfcqHandOff.self, "Queue.1P1C wfcq, batches of \(batch)", batch: batch, producers: 1)
    }
    for batch in [8, 64] {
        registerCrossThread(InboxHandOff.self, "Queue.3P1C Inbox, batches of \(batch)", batch: batch, producers: 3)
        registerCrossThread(WfcqHandOff.self, "Queue.3P1C wfcq, batches of \(batch)", batch: batch, producers: 3)
    }
    registerSingleThread(InboxHandOff.self, "Queue.1T Inbox, post 1024 + drain")
    registerSingleThread(WfcqHandOff.self, "Queue.1T wfcq, post 1024 + drain")
}
