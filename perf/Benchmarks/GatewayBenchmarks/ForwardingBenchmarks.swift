// Allocations per forwarded frame: the echo benchmark's client and counting, but the
// frames go through in-process link tiers on loopback (access -> core, and
// access -> aggregation -> core), so every tier's threads are in the count.
// Run from perf/:  swift package benchmark --filter 'Gateway forward.*'
import Benchmark
import GatewayCore
import Glibc
import LinkCore
import Logging

/// The core's application: every DATA frame goes back down unchanged (no copy).
private final class EchoCore: CoreHandler {
    func opened(_ session: CoreSession, peer: PeerAddress) {}
    func received(_ frame: Frame, clientFrame: UnsafeRawBufferPointer, from session: CoreSession) {
        session.echo(frame)
    }
    func closed(_ session: CoreSession, cause: UInt8) {}
}

/// A core, optionally an aggregation server, an access gateway in front, and one
/// blocking loopback client on the access gateway, as EchoRig's: it reuses its
/// buffers, so nothing on the client side allocates per batch.
private final class ForwardRig: @unchecked Sendable {  // used from the benchmark thread only
    static let framesPerBatch = 32
    static let frameSize = 512
    let name: String
    /// Started in this order, stopped in reverse: core, [aggregation], access.
    private var tiers: [Gateway] = []
    let access: Gateway
    let fd: Int32
    let request = makeFrames(count: framesPerBatch, size: frameSize)
    let reply = UnsafeMutableRawBufferPointer.allocate(byteCount: framesPerBatch * frameSize, alignment: 16)
    var measuredFrames = 0
    var measuredMallocs = 0

    init(name: String, aggregation: Bool) throws {
        self.name = name
        // Warnings only: link-up lines would land in the benchmark's output.
        var logger = Logger(label: "forward-bench")
        logger.logLevel = .warning
        var base = GatewayConfig()
        base.host = "127.0.0.1"
        base.port = 0
        base.maxConnections = 64

        let core = try Gateway(config: CoreServer.config(base, clientMaxFrame: base.maxFrame),
                               handler: CoreServer(handler: EchoCore(), node: 1, clientMaxFrame: base.maxFrame,
                                                   logger: logger),
                               logger: logger)
        try core.start()
        tiers.append(core)
        var upstreamPort = core.port
        if aggregation {
            var config = base
            config.role = .aggregation
            config.poller = .poll
            config.upstream = [GatewayConfig.Upstream(host: "127.0.0.1", port: upstreamPort)]
            let agg = try Gateway(config: config, handler: EchoHandler(), logger: logger)
            try agg.start()
            tiers.append(agg)
            // Before access connects: a lower link's HELLO is refused until an upper link is up.
            Self.waitFor("aggregation's links to the core") { agg.stats().linksUp == 2 }
            upstreamPort = agg.port
        }
        var config = base
        config.upstream = [GatewayConfig.Upstream(host: "127.0.0.1", port: upstreamPort)]
        access = try Gateway(config: config, handler: EchoHandler(), logger: logger)  // forwards, never calls it
        try access.start()
        tiers.append(access)
        let access = access
        Self.waitFor("access's links") { access.stats().linksUp == 2 }

        fd = loopbackClient(port: access.port)
    }

    /// Links come up within a retry or two; 10 s means something is broken.
    private static func waitFor(_ what: String, _ condition: () -> Bool) {
        for _ in 0..<10_000 where !condition() { usleep(1_000) }
        precondition(condition(), "timed out waiting for \(what)")
    }

    /// Writes one batch, reads all of its replies, and checks each reply's length and seq.
    @inline(__always)
    func forwardBatch() {
        exchange(fd, request, reply)
        // One client connection stays on one link, so replies keep the request order.
        let base = UnsafeRawPointer(reply.baseAddress!)
        for i in 0..<Self.framesPerBatch {
            let h = FrameHeader(decoding: base + i &* Self.frameSize)
            precondition(h.length == UInt32(Self.frameSize) && h.seq == UInt32(i) && h.status == 0,
                         "reply \(i): length \(h.length) seq \(h.seq) status \(h.status)")
        }
    }

    func shutdown() {
        close(fd)
        let stats = access.stats()
        for g in tiers.reversed() { g.stop() }
        tiers = []
        if measuredFrames > 0 {
            let perFrame = Double(measuredMallocs) / Double(measuredFrames)
            writeStderr("forward \(name): \(measuredMallocs) mallocs over \(measuredFrames) frames forwarded"
                        + " in measured iterations = \(perFrame) per frame; access forwardedUp \(stats.forwardedUp)"
                        + " forwardedDown \(stats.forwardedDown) staleDrops \(stats.staleDrops)\n")
        }
    }
}

nonisolated(unsafe) private var forwardRig: ForwardRig?

private let mallocsPer1000Forwarded = BenchmarkMetric.custom("Mallocs per 1000 forwarded frames",
                                                             polarity: .prefersSmaller, useScalingFactor: false)

/// One benchmark per tier layout, shaped like "Gateway echo, batches of 32 x 512 B frames, loopback":
/// 2,000 warm-up batches in setup, then process-wide malloc counts per measured batch.
private func registerForwarding(_ title: String, name: String, aggregation: Bool) {
    Benchmark(title,
              configuration: .init(metrics: [.wallClock, .throughput, .mallocCountTotal, mallocsPer1000Forwarded],
                                   warmupIterations: 100, scalingFactor: .one, maxDuration: .seconds(2),
                                   setup: {
                                       let rig = try ForwardRig(name: name, aggregation: aggregation)
                                       for _ in 0..<2000 { rig.forwardBatch() }
                                       forwardRig = rig
                                   },
                                   teardown: { forwardRig?.shutdown(); forwardRig = nil })) { benchmark in
        let rig = forwardRig!
        for _ in benchmark.scaledIterations {
            let before = mallocsSoFar()
            rig.forwardBatch()
            let mallocs = mallocsSoFar() &- before
            if benchmark.currentIteration >= benchmark.configuration.warmupIterations {  // counting is on
                rig.measuredMallocs &+= mallocs
                rig.measuredFrames &+= ForwardRig.framesPerBatch
            }
            benchmark.measurement(mallocsPer1000Forwarded, mallocs * 1000 / ForwardRig.framesPerBatch)
        }
    }
}

func registerForwardingBenchmarks() {
    registerForwarding("Gateway forward access -> core, batches of 32 x 512 B frames, loopback",
                       name: "access->core", aggregation: false)
    registerForwarding("Gateway forward access -> aggregation -> core, batches of 32 x 512 B frames, loopback",
                       name: "access->aggregation->core", aggregation: true)
}
