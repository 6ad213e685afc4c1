// Micro-benchmarks of the engine's hot parts (ordo-one/benchmark).
// Run from perf/:  swift package benchmark            (all)
//                  swift package benchmark --filter 'FrameHeader.*'
//
// The engine's internals (frame cutter, rings, gates, timer wheel) are reached
// through `@_spi(Benchmarks)`; the echo benchmark drives a whole in-process
// Gateway through its public API. Where a benchmark sets `scalingFactor`, the
// figures marked `*` are per scaled iteration (the operation in its name).
import Benchmark
@_spi(Benchmarks) import GatewayCore
import Glibc
import Synchronization
#if canImport(MallocInterposerSwift)
import MallocInterposerSwift
#endif

/// `count` back-to-back frames of `size` bytes each (header + body), with
/// distinct header fields so nothing folds into a constant.
func makeFrames(count: Int, size: Int) -> UnsafeMutableRawBufferPointer {
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: count * size, alignment: 16)
    buffer.initializeMemory(as: UInt8.self, repeating: 0xA5)
    for i in 0..<count {
        let header = FrameHeader(
            length: UInt32(size), seq: UInt32(i), cmd: UInt16(truncatingIfNeeded: i & 0x7FFF),
            status: 0, uid: UInt32(i &* 7))
        header.encode(into: buffer.baseAddress! + i * size)
    }
    return buffer
}

// Inputs built once (scratch64 is the encode target).
nonisolated(unsafe) private let headers64 = makeFrames(count: batch, size: 64)
nonisolated(unsafe) private let scratch64 = makeFrames(count: batch, size: 64)
nonisolated(unsafe) private let block512 = makeFrames(count: 64 * 1024 / 512, size: 512)

/// Headers per iteration in the header benchmarks: the times are per 1,000 headers,
/// which keeps nanosecond resolution meaningful (one header takes about a nanosecond).
private let batch = 1000

private let maxFrame = 1 << 20

// MARK: - frame decode

/// The pool the decode and ring benchmarks draw chunks from, and one read block
/// (a 64 KiB pool chunk) holding `block512`'s 128 frames, as Receive's read block would.
private let pool = ChunkPool()
nonisolated(unsafe) private let readBlock: Chunk = {
    let c = pool.allocate(capacity: ChunkPool.blockCapacity)
    c.bytes.copyMemory(from: block512.baseAddress!, byteCount: block512.count)
    return c  // this reference is never released: the block outlives every descriptor on it
}()

/// Feeds the read block to `assembly` in reads of `readSize` bytes, releasing each
/// emitted descriptor's reference as Send would once the bytes are written.
@inline(__always)
private func assemble(_ assembly: inout FrameAssembly, readSize: Int) -> Int {
    var frames = 0
    var start = 0
    let total = block512.count
    while start < total {
        let n = min(readSize, total - start)
        let outcome = assembly.consume(block: readBlock, start: start, count: n, maxFrame: maxFrame, pool: pool) { d in
            pool.release(d.chunk)
        }
        guard case .ok(_, let f) = outcome else { fatalError("bad length in a well-formed block") }
        frames &+= f
        start &+= n
    }
    return frames
}

// MARK: - two-thread ring

/// A joinable pthread running `body` (QueueBenchmarks uses it too).
final class Joinable: @unchecked Sendable {  // the handle is touched only by the creating thread
    private var handle = pthread_t()
    private final class Box { let body: () -> Void; init(_ b: @escaping () -> Void) { body = b } }

    init(_ body: @escaping () -> Void) {
        let box = Unmanaged.passRetained(Box(body)).toOpaque()
        let rc = pthread_create(&handle, nil, { raw in
            Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue().body()
            return nil
        }, box)
        precondition(rc == 0, "pthread_create: \(rc)")
    }

    func join() { pthread_join(handle, nil) }
}

/// A ring whose consumer is another thread, popping what it finds in batches as
/// Send does (peek each entry, then one pop). It yields the CPU after a short
/// empty spin, since the benchmark thread may need this core (2 cores).
private final class SPSCRing: @unchecked Sendable {  // the ring is SPSC by construction; `stop` is atomic
    let ring = FrameRing.standalone(capacity: 32)
    let stop = Atomic<Bool>(false)
    let descriptor: FrameDescriptor
    private var consumer: Joinable?

    init() {
        descriptor = FrameDescriptor(chunk: pool.allocate(capacity: 256), offset: 0, length: 64)
        let ring = ring
        consumer = Joinable { [self] in
            var sum: UInt64 = 0
            var idle = 0
            while true {
                let n = ring.count
                if n > 0 {
                    for i in 0..<n { sum &+= UInt64(ring.peek(i).pointee.length) }
                    ring.pop(n)
                    idle = 0
                } else {
                    if stop.load(ordering: .relaxed) { break }
                    idle &+= 1
                    if idle > 256 { sched_yield() }
                }
            }
            blackHole(sum)
        }
    }

    func shutdown() {
        stop.store(true, ordering: .relaxed)
        consumer?.join()
        consumer = nil
        pool.release(descriptor.chunk)
        ring.deallocate()
    }
}

nonisolated(unsafe) private var spsc: SPSCRing?

// MARK: - gate

private let gateIDs = 1024
private let gateTable = ConnectionTable(capacity: gateIDs, ringCapacity: 4)
private let gateInbox = StageInbox.standalone(table: gateTable)

// MARK: - timer wheel

private let timerCount = 1024
private let timerSpread: UInt64 = 64
nonisolated(unsafe) private let timerNodes: UnsafeMutablePointer<TimerNode> = {
    let p = UnsafeMutablePointer<TimerNode>.allocate(capacity: timerCount)
    p.initialize(repeating: TimerNode(), count: timerCount)
    return p
}()
nonisolated(unsafe) private let wheel = TimerWheel(
    nodes: TimerNodes(base: UnsafeMutableRawPointer(timerNodes), stride: MemoryLayout<TimerNode>.stride),
    bucketCount: 1024)

// MARK: - echo through an in-process gateway

/// An in-process Gateway (echo handler, 127.0.0.1, ephemeral port) and one
/// blocking loopback client that writes a batch of frames and reads every reply,
/// reusing its buffers: nothing on the client side allocates per batch.
private final class EchoRig: @unchecked Sendable {  // used from the benchmark thread only
    static let framesPerBatch = 32
    static let frameSize = 512
    let gateway: Gateway
    let fd: Int32
    let request = makeFrames(count: framesPerBatch, size: frameSize)
    let reply = UnsafeMutableRawBufferPointer.allocate(byteCount: framesPerBatch * frameSize, alignment: 16)
    /// Totals over the measured iterations, for the summary printed at teardown.
    var measuredFrames = 0
    var measuredMallocs = 0

    init() throws {
        var config = GatewayConfig()
        config.host = "127.0.0.1"
        config.port = 0
        config.maxConnections = 64
        gateway = try Gateway(config: config, handler: EchoHandler())
        try gateway.start()

        fd = loopbackClient(port: gateway.port)
    }

    /// Writes one batch and reads all of its replies.
    @inline(__always)
    func echoBatch() { exchange(fd, request, reply) }

    func shutdown() {
        close(fd)
        gateway.stop()
        let stats = gateway.stats()
        if measuredFrames > 0 {
            let perFrame = Double(measuredMallocs) / Double(measuredFrames)
            writeStderr("echo: \(measuredMallocs) mallocs over \(measuredFrames) frames echoed in measured iterations = \(perFrame) per frame; gateway framesIn \(stats.framesIn) framesOut \(stats.framesOut)\n")
        }
    }
}

nonisolated(unsafe) private var echo: EchoRig?

/// A blocking TCP_NODELAY connection to 127.0.0.1:port.
func loopbackClient(port: Int) -> Int32 {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    precondition(fd >= 0, "socket: errno \(errno)")
    var one: Int32 = 1
    _ = setsockopt(fd, 6 /* IPPROTO_TCP */, 1 /* TCP_NODELAY */, &one, socklen_t(MemoryLayout<Int32>.size))
    var addr = sockaddr_in()
    addr.sin_family = sa_family_t(AF_INET)
    addr.sin_port = UInt16(port).bigEndian
    addr.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
    let rc = withUnsafePointer(to: &addr) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
            connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
        }
    }
    precondition(rc == 0, "connect to 127.0.0.1:\(port): errno \(errno)")
    return fd
}

/// Writes all of `request`, then reads until `reply` is full.
@inline(__always)
func exchange(_ fd: Int32, _ request: UnsafeMutableRawBufferPointer, _ reply: UnsafeMutableRawBufferPointer) {
    let total = request.count
    var sent = 0
    while sent < total {
        let n = write(fd, request.baseAddress! + sent, total - sent)
        precondition(n > 0 || errno == EINTR, "write: errno \(errno)")
        if n > 0 { sent += n }
    }
    var got = 0
    while got < reply.count {
        let n = read(fd, reply.baseAddress! + got, reply.count - got)
        precondition(n > 0 || (n < 0 && errno == EINTR), "read: \(n), errno \(errno)")
        if n > 0 { got += n }
    }
}

func writeStderr(_ s: String) {
    var s = s
    s.withUTF8 { _ = write(2, $0.baseAddress, $0.count) }
}

@inline(__always)
func mallocsSoFar() -> Int {
    #if canImport(MallocInterposerSwift)
    MallocInterposerSwift.getStatistics().mallocCount
    #else
    0
    #endif
}

private let mallocsPer1000Frames = BenchmarkMetric.custom("Mallocs per 1000 echoed frames", polarity: .prefersSmaller,
                                                          useScalingFactor: false)

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        warmupIterations: 10,
        scalingFactor: .one,
        maxDuration: .seconds(2),
        maxIterations: 1_000_000
    )

    Benchmark("FrameHeader(decoding:) x1000 headers") { benchmark in
        let base = UnsafeRawPointer(headers64.baseAddress!)
        for _ in benchmark.scaledIterations {
            var sum: UInt64 = 0
            for i in 0..<batch {
                let h = FrameHeader(decoding: base + i &* 64)
                sum &+= UInt64(h.length) &+ UInt64(h.seq) &+ UInt64(h.cmd) &+ UInt64(h.status) &+ UInt64(h.uid)
            }
            blackHole(sum)
        }
    }

    Benchmark("FrameHeader.length(at:) x1000 headers") { benchmark in
        let base = UnsafeRawPointer(headers64.baseAddress!)
        for _ in benchmark.scaledIterations {
            var sum: UInt64 = 0
            for i in 0..<batch {
                sum &+= UInt64(FrameHeader.length(at: base + i &* 64))
            }
            blackHole(sum)
        }
    }

    Benchmark("FrameHeader.encode(into:) x1000 headers") { benchmark in
        let base = scratch64.baseAddress!
        for round in benchmark.scaledIterations {
            for i in 0..<batch {
                FrameHeader(length: 64, seq: UInt32(truncatingIfNeeded: round &+ i), cmd: 1, status: 0, uid: 9)
                    .encode(into: base + i &* 64)
            }
            blackHole(base.load(as: UInt8.self))
        }
    }

    // A reference cut loop built from FrameHeader.length(at:) alone: walk one 64 KiB
    // read block of 512-byte frames (128 frames), check every length, count whole
    // frames. The floor that the engine's frame cutter is measured against.
    Benchmark("Reference cut loop, 64 KiB block of 512 B frames") { benchmark in
        let base = UnsafeRawPointer(block512.baseAddress!)
        let total = block512.count
        let maxFrame: UInt32 = 1 << 20
        for _ in benchmark.scaledIterations {
            var offset = 0
            var frames = 0
            while total &- offset >= FrameHeader.size {
                let length = FrameHeader.length(at: base + offset)
                if length < UInt32(FrameHeader.size) || length > maxFrame { break }
                if total &- offset < Int(length) { break }
                offset &+= Int(length)
                frames &+= 1
            }
            blackHole(frames)
        }
    }

    // MARK: frame decode

    // The engine's cutter over the same block: per 64 KiB block (128 frames).
    Benchmark("FrameCutter.scan, 64 KiB block of 512 B frames",
              configuration: .init(scalingFactor: .kilo, maxDuration: .seconds(1))) { benchmark in
        let base = UnsafeRawPointer(block512.baseAddress!)
        let total = block512.count
        for _ in benchmark.scaledIterations {
            blackHole(FrameCutter.scan(base, total, maxFrame: maxFrame))
        }
    }

    // Receive's whole decode step when one read brings the whole block: one
    // descriptor for the run of 128 frames (retain on the block, then released).
    Benchmark("FrameAssembly.consume, 64 KiB block of 512 B frames in one read",
              configuration: .init(scalingFactor: .kilo, maxDuration: .seconds(1))) { benchmark in
        var assembly = FrameAssembly()
        for _ in benchmark.scaledIterations {
            let frames = assemble(&assembly, readSize: block512.count)
            precondition(frames == 128)
        }
    }

    // The same block in 1000-byte reads: 66 reads, and every read boundary cuts a
    // frame, so 65 of the 128 frames are copied into a pool chunk of their own (the
    // pool's 1 KiB class) and the rest leave as runs. Per 64 KiB block.
    Benchmark("FrameAssembly.consume, 64 KiB block of 512 B frames in 1000 B reads",
              configuration: .init(scalingFactor: .one, maxDuration: .seconds(1))) { benchmark in
        var assembly = FrameAssembly()
        for _ in benchmark.scaledIterations {
            let frames = assemble(&assembly, readSize: 1000)
            precondition(frames == 128)
        }
        precondition(!assembly.isPartial)
    }

    // MARK: ring

    // One thread pushes 32 descriptors (a full default ring), then pops them one by
    // one as Deal does (peek, pop(1)). Per 32 push + 32 pop.
    Benchmark("FrameRing push 32 then pop 32, one thread",
              configuration: .init(scalingFactor: .kilo, maxDuration: .seconds(1))) { benchmark in
        let ring = FrameRing.standalone(capacity: 32)
        defer { ring.deallocate() }
        let d = FrameDescriptor(chunk: readBlock, offset: 0, length: 512)
        for round in benchmark.scaledIterations {
            for i in 0..<32 {
                _ = ring.push(FrameDescriptor(chunk: d.chunk, offset: UInt32(truncatingIfNeeded: i), length: UInt32(truncatingIfNeeded: round)))
            }
            var sum: UInt32 = 0
            while ring.count > 0 {
                sum &+= ring.peek(0).pointee.offset
                ring.pop(1)
            }
            blackHole(sum)
        }
    }

    // Producer here, consumer on another thread popping in batches: 32 descriptors
    // pushed per scaled iteration (waiting while the ring is full), and at the end of
    // each measurement the producer waits until the consumer has taken them all.
    // Per 32 descriptors through the ring across cores.
    Benchmark("FrameRing SPSC across two threads, per 32 descriptors",
              configuration: .init(scalingFactor: .kilo, maxDuration: .seconds(1),
                                   setup: { spsc = SPSCRing() },
                                   teardown: { spsc?.shutdown(); spsc = nil })) { benchmark in
        let s = spsc!
        let ring = s.ring
        let d = s.descriptor
        for _ in benchmark.scaledIterations {
            var i = 0
            var spins = 0
            while i < 32 {
                if ring.push(d) {
                    i &+= 1
                } else {
                    spins &+= 1
                    if spins & 255 == 0 { sched_yield() }
                }
            }
        }
        while ring.freeCount < 32 { sched_yield() }
    }

    // MARK: gate

    // Deal's inbox: post 1024 distinct connection ids (each gate closes, the id is
    // queued), post all 1024 again (every gate is shut: dropped), then drain (each
    // gate reopens). Per 2,048 posts + 1,024 drained ids.
    Benchmark("StageInbox post 1024 ids twice (2nd dropped by the gate), drain") { benchmark in
        let table = gateTable
        let inbox = gateInbox
        for _ in benchmark.scaledIterations {
            for i in 0..<gateIDs { inbox.post(ConnectionID(index: UInt32(i), generation: 0), in: table) }
            for i in 0..<gateIDs { inbox.post(ConnectionID(index: UInt32(i), generation: 0), in: table) }
            var sum: UInt32 = 0
            let n = inbox.drain(in: table) { id in sum &+= id.index }
            precondition(n == gateIDs, "the gate let \(n) ids through, expected \(gateIDs)")
            blackHole(sum)
        }
    }

    // MARK: timer wheel

    // 1024 timers spread over 1...64 ticks, every other one cancelled, then 64
    // ticks advanced, firing the 512 left. Per 1024 schedule + 512 cancel +
    // 64 ticks / 512 fires.
    Benchmark("TimerWheel schedule 1024, cancel 512, advance 64 ticks firing 512") { benchmark in
        let w = wheel
        for _ in benchmark.scaledIterations {
            for i in 0..<timerCount {
                w.schedule(UInt32(i), after: UInt64(i) % timerSpread + 1)
            }
            for i in stride(from: 0, to: timerCount, by: 2) { w.cancel(UInt32(i)) }
            var fired = 0
            w.advance(to: w.now + timerSpread) { _ in fired &+= 1 }
            precondition(fired == timerCount / 2 && w.count == 0, "fired \(fired), \(w.count) left")
        }
    }

    // MARK: allocations per echoed frame

    // The whole engine: an in-process Gateway (echo handler) on 127.0.0.1 and one
    // blocking loopback client writing 32 frames of 512 B at once and reading the
    // 32 replies. Malloc counts are process-wide, so the gateway's four threads
    // (and liburcu's) are counted with the client; the setup warms everything up
    // (pool, read blocks) with 2,000 batches first. The figure that matters is
    // "Mallocs per 1000 echoed frames": 0 in steady state is the aim.
    Benchmark("Gateway echo, batches of 32 x 512 B frames, loopback",
              configuration: .init(metrics: [.wallClock, .throughput, .mallocCountTotal, mallocsPer1000Frames],
                                   warmupIterations: 100, scalingFactor: .one, maxDuration: .seconds(2),
                                   setup: {
                                       let rig = try EchoRig()
                                       for _ in 0..<2000 { rig.echoBatch() }
                                       echo = rig
                                   },
                                   teardown: { echo?.shutdown(); echo = nil })) { benchmark in
        let rig = echo!
        for _ in benchmark.scaledIterations {
            let before = mallocsSoFar()
            rig.echoBatch()
            let mallocs = mallocsSoFar() &- before
            if benchmark.currentIteration >= benchmark.configuration.warmupIterations {  // counting is on
                rig.measuredMallocs &+= mallocs
                rig.measuredFrames &+= EchoRig.framesPerBatch
            }
            benchmark.measurement(mallocsPer1000Frames, mallocs * 1000 / EchoRig.framesPerBatch)
        }
    }

    registerQueueBenchmarks()
    registerForwardingBenchmarks()
    registerPushBenchmarks()
}
