// Allocations per delivered push: an in-process core and access gateway on loopback,
// 100 bound clients and one control client; each iteration the control client asks
// the core to push one frame to everyone, every client reads it, then the control
// client reads its echo. Mallocs are counted process-wide, every thread included.
// Run from perf/:  swift package benchmark --filter 'Gateway push.*'
import Benchmark
import GatewayCore
import Glibc
import LinkCore
import Logging

/// Binds each session that sends cmd 10 (body: uid) and pushes one 64-byte frame
/// to every session when a session sends cmd 20; echoes both requests.
private final class PushingCore: CoreHandler {
    var server: CoreServer!
    private let body = [UInt8](repeating: 0x42, count: 64)
    func opened(_ session: CoreSession, peer: PeerAddress) {}
    func closed(_ session: CoreSession, cause: UInt8) {}
    func received(_ frame: Frame, clientFrame: UnsafeRawBufferPointer, from session: CoreSession) {
        let header = FrameHeader(decoding: clientFrame.baseAddress!)
        if header.cmd == 10 {
            let uid = clientFrame.baseAddress!.loadUnaligned(fromByteOffset: FrameHeader.size, as: UInt32.self)
            session.bind(uid: UInt32(bigEndian: uid))
        }
        if header.cmd == 20 {
            body.withUnsafeBytes { server.push(.all, target: 0, FrameHeader(length: 0, seq: header.seq, cmd: 99),
                                               body: $0) }
        }
        session.echo(frame)
    }
}

private final class PushRig: @unchecked Sendable {  // used from the benchmark thread only
    static let clients = 100
    static let pushSize = FrameHeader.size + 64
    private var tiers: [Gateway] = []
    private let control: Int32
    private var receivers: [Int32] = []
    private let request = makeFrames(count: 1, size: FrameHeader.size)
    private let reply = UnsafeMutableRawBufferPointer.allocate(byteCount: 4096, alignment: 16)
    var measuredPushes = 0
    var measuredMallocs = 0

    init() throws {
        var logger = Logger(label: "push-bench")
        logger.logLevel = .warning
        var base = GatewayConfig()
        base.host = "127.0.0.1"
        base.port = 0
        base.maxConnections = 256
        let handler = PushingCore()
        let server = CoreServer(handler: handler, node: 1, clientMaxFrame: base.maxFrame, logger: logger)
        handler.server = server
        let core = try Gateway(config: CoreServer.config(base, clientMaxFrame: base.maxFrame), handler: server,
                               logger: logger)
        try core.start()
        var config = base
        config.upstream = [GatewayConfig.Upstream(host: "127.0.0.1", port: core.port)]
        let access = try Gateway(config: config, handler: EchoHandler(), logger: logger)
        try access.start()
        tiers = [core, access]
        for _ in 0..<10_000 where access.stats().linksUp < 2 { usleep(1_000) }
        precondition(access.stats().linksUp == 2, "links did not come up")
        control = loopbackClient(port: access.port)
        for i in 0..<Self.clients {
            let fd = loopbackClient(port: access.port)
            let login = makeFrames(count: 1, size: FrameHeader.size + 4)
            FrameHeader(length: UInt32(login.count), seq: 0, cmd: 10, status: 0, uid: 0).encode(into: login.baseAddress!)
            login.storeBytes(of: UInt32(i + 1).bigEndian, toByteOffset: FrameHeader.size, as: UInt32.self)
            exchange(fd, login, UnsafeMutableRawBufferPointer(rebasing: reply[..<login.count]))
            receivers.append(fd)
        }
        FrameHeader(length: UInt32(FrameHeader.size), seq: 0, cmd: 20, status: 0, uid: 0)
            .encode(into: request.baseAddress!)
    }

    /// One push to everyone. The control client gets its echo and the push too, in either
    /// order: it reads both, then every receiver reads its push.
    func pushOnce() {
        exchange(control, request, UnsafeMutableRawBufferPointer(rebasing: reply[..<(request.count + Self.pushSize)]))
        for fd in receivers {
            exchange(fd, UnsafeMutableRawBufferPointer(start: request.baseAddress, count: 0),
                     UnsafeMutableRawBufferPointer(rebasing: reply[..<Self.pushSize]))
            precondition(FrameHeader(decoding: reply.baseAddress!).cmd == 99, "not a push")
        }
    }

    func shutdown() {
        let stats = tiers[1].stats()
        close(control)
        for fd in receivers { close(fd) }
        for g in tiers.reversed() { g.stop() }
        if measuredPushes > 0 {
            writeStderr("push: \(measuredMallocs) mallocs over \(measuredPushes) pushes delivered in measured"
                        + " iterations = \(Double(measuredMallocs) / Double(measuredPushes)) per delivery;"
                        + " access pushDeliveries \(stats.pushDeliveries) duplicates \(stats.duplicates)\n")
        }
    }
}

nonisolated(unsafe) private var pushRig: PushRig?

private let mallocsPer1000Pushes = BenchmarkMetric.custom("Mallocs per 1000 delivered pushes",
                                                          polarity: .prefersSmaller, useScalingFactor: false)

func registerPushBenchmarks() {
    Benchmark("Gateway push to 101 bound clients, loopback",
              configuration: .init(metrics: [.wallClock, .throughput, .mallocCountTotal, mallocsPer1000Pushes],
                                   warmupIterations: 100, scalingFactor: .one, maxDuration: .seconds(2),
                                   setup: {
                                       let rig = try PushRig()
                                       for _ in 0..<500 { rig.pushOnce() }
                                       pushRig = rig
                                   },
                                   teardown: { pushRig?.shutdown(); pushRig = nil })) { benchmark in
        let rig = pushRig!
        let deliveries = PushRig.clients + 1
        for _ in benchmark.scaledIterations {
            let before = mallocsSoFar()
            rig.pushOnce()
            let mallocs = mallocsSoFar() &- before
            if benchmark.currentIteration >= benchmark.configuration.warmupIterations {
                rig.measuredMallocs &+= mallocs
                rig.measuredPushes &+= deliveries
            }
            benchmark.measurement(mallocsPer1000Pushes, mallocs * 1000 / deliveries)
        }
    }
}
