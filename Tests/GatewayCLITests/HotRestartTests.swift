import Foundation
import Glibc
import Testing

@testable import GatewayCLI

/// A hot restart under load, end to end on the built binaries: `gateway` A serves 1000 busy clients
/// and 200 new connections a second (`bin_test restart-probe`); gateway B takes A's listeners over;
/// every client is asked to reconnect within A's drain window, and not one request or connect fails.
@Suite(.serialized) struct HotRestartTests {
    static let drainSeconds = 6
    static let connections = 1000

    /// A child process whose stdout and stderr go to files, read back while it runs.
    typealias Child = TestProcess

    static func figures(_ json: String) throws -> [String: Any] {
        let object = try JSONSerialization.jsonObject(with: Data(json.utf8))
        return try #require(object as? [String: Any], "restart-probe printed no JSON object: \(json)")
    }

    /// What serves the clients: the echo handler, a gateway forwarding to a core (both processes hold
    /// links to it while the old one drains), or masters: two workers on each side, three taken over by
    /// two (the new master keeps the third socket, which gets no new connections), two by three. With
    /// `moveEcho` and `moveEchoPoll` (each poller) B takes the live connections too (docs/HANDOVER.md):
    /// the clients never reconnect. So do masters' workers, each from its predecessor of the same index
    /// (3 -> 2: old worker 2 has none, and its clients drain). Echo asks for the drain (--handover drain).
    /// Forwarding gateways move their sessions too (MOVE, docs/LINK.md): the core keeps them, hearing no
    /// CLOSED; `forwardingDelayedPoll` (both on poll(2)) has the core hold every answer 100 ms, so each busy
    /// client has a request at the core when it moves; `forwardingWorkers` is 2 -> 2.
    enum Topology: String, CaseIterable, CustomTestStringConvertible {
        case echo, forwarding, forwardingDelayedPoll, forwardingWorkers, workers, fewerWorkers, moreWorkers, moveEcho,
             moveEchoPoll
        var testDescription: String { rawValue }

        /// B takes the connections over rather than A asking them to reconnect.
        var moves: Bool { self != .echo && self != .fewerWorkers }

        var forwards: Bool { [.forwarding, .forwardingDelayedPoll, .forwardingWorkers].contains(self) }

        /// Workers of the old (A) and new (B) process; 1: no master.
        var workers: (a: Int, b: Int) {
            switch self {
            case .echo, .forwarding, .forwardingDelayedPoll, .moveEcho, .moveEchoPoll: (1, 1)
            case .workers, .forwardingWorkers: (2, 2)
            case .fewerWorkers: (3, 2)
            case .moreWorkers: (2, 3)
            }
        }
    }

    @Test(.timeLimit(.minutes(2)), arguments: Topology.allCases)
    func takeOverUnderLoadLosesNothing(_ topology: Topology) throws {
        let gateway = try GatewayBinaryTests.binary()
        let binTest = gateway.deletingLastPathComponent().appendingPathComponent("bin_test")
        try #require(FileManager.default.isExecutableFile(atPath: binTest.path),
                     "no bin_test executable at \(binTest.path): build it first (swift build --product bin_test)")
        let logs = FileManager.default.temporaryDirectory.appendingPathComponent("hot-restart-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: logs, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: logs) }
        // sun_path holds 108 bytes, so not the (possibly long) $TMPDIR.
        let control = "/tmp/gateway-restart-\(UUID().uuidString.prefix(8)).sock"
        defer { unlink(control) }
        var drain = ["--control-socket", control, "--drain-timeout", "\(Self.drainSeconds)", "--stats-interval", "0"]
        // A fixed admin port, below the ephemeral range: the successor must get it once A lets go.
        let adminPort = Int.random(in: 10_000..<20_000)
        var core: Child?
        defer { core?.kill() }
        drain += ["--admin", "127.0.0.1:\(adminPort)"]
        if topology == .moveEchoPoll || topology == .forwardingDelayedPoll { drain += ["--poller", "poll"] }
        if topology.forwards {
            let delay = topology == .forwardingDelayedPoll ? ["--delay-us", "100000"] : []
            let started = try Child(binTest, ["core", "--port", "0"] + delay, logs: logs, name: "core")
            core = started
            let marker = "echo core on 127.0.0.1:"
            try #require(started.waitForLog(marker, seconds: 20), "the core did not start: \(started.stderr)")
            let corePort = started.stderr.components(separatedBy: marker)[1].prefix { $0.isNumber }
            drain += ["--upstream", "127.0.0.1:\(corePort)"]
        }
        let (aWorkers, bWorkers) = topology.workers
        let masters = aWorkers > 1
        let started = masters ? "workers on 127.0.0.1:" : "[GatewayCLI] listening on 127.0.0.1:"

        let a = try Child(gateway, ["--port", "0", "--workers", "\(aWorkers)"] + drain, logs: logs, name: "a")
        defer { a.kill() }
        try #require(a.waitForLog(started, seconds: 20), "gateway A did not start: \(a.stderr)")
        let portText = a.stderr.components(separatedBy: started)[1].prefix { $0.isNumber }
        let port = try #require(Int(portText), "no port in gateway A's log: \(a.stderr)")
        if topology.forwards {
            // A accepts before its links are up, and answers no_upstream until one is: wait for it (Deal
            // logs it once the link routes), so that no request of the probe meets that.
            _ = try a.waitFor(": up (node ", count: aWorkers * 2, seconds: 20)  // two links each
        }

        let probeStart = Date()
        let probe = try Child(binTest, ["restart-probe", "--port", "\(port)", "--connections", "\(Self.connections)",
                                        "--rate", "200", "--duration", "14"], logs: logs, name: "probe")
        defer { probe.kill() }
        try #require(probe.waitForLog("\(Self.connections) connections open", seconds: 30),
                     "the probe's connections did not all open: \(probe.stderr)")
        // Some traffic, short connections included, on A alone before the take-over.
        let sinceStart = Date().timeIntervalSince(probeStart)
        if sinceStart < 2 { usleep(UInt32((2 - sinceStart) * 1e6)) }

        let mode = topology == .echo ? ["--handover", "drain"] : []
        let b = try Child(gateway, ["--take-over", control, "--workers", "\(bWorkers)"] + mode + drain,
                          logs: logs, name: "b")
        defer { b.kill() }
        try #require(b.waitForLog("took over \(aWorkers) listeners", seconds: 20), "B did not take over: \(b.stderr)")
        let tookOver = Date()

        let aExited = a.waitForExit(by: tookOver.addingTimeInterval(Double(Self.drainSeconds) + 5))
        #expect(aExited, "gateway A still running \(Self.drainSeconds) + 5 s after the take-over: \(a.stderr)")
        if aExited {
            #expect(a.process.terminationReason == .exit && a.process.terminationStatus == 0, "A: \(a.stderr)")
        }
        let handedOver = "taken over through \(control): draining over \(Self.drainSeconds) s"
        #expect(a.stderr.contains(handedOver), "\(a.stderr)")
        // A master says so once its workers have drained and exited.
        #expect(a.stderr.contains(masters ? "every worker has exited" : "drained: stopping"),
                "\(a.stderr)")
        // A worker that was taken over says so before it exits (HANDED_OVER): its master restarts none.
        #expect(!a.stderr.contains("; restart "), "A's master restarted a worker that was taken over: \(a.stderr)")
        if masters {
            #expect(a.stderr.contains("worker 0 handed its connections to its successor"), "\(a.stderr)")
        }

        try #require(probe.waitForExit(by: Date(timeIntervalSinceNow: 40)),
                     "the probe did not finish: \(probe.stderr)")
        #expect(probe.process.terminationStatus == 0, "\(probe.stderr)")
        let json = probe.stdout
        print("restart-probe: \(json)")
        let figures = try Self.figures(json)
        func count(_ key: String) -> Int? { (figures[key] as? NSNumber)?.intValue }
        let context = "restart-probe: \(json)\nA: \(a.stderr)\nB: \(b.stderr)"
        for key in ["connect_refused", "connect_failed", "connect_timeouts", "reply_timeouts", "resets",
                    "server_closes", "lost", "mismatched"] {
            #expect(count(key) == 0, "\(key): \(context)")
        }
        // Every "handed over N connections" line of A (one per worker), and every "took over ... and N" of B.
        func sum(_ text: String, _ marker: String) -> Int {
            text.components(separatedBy: marker).dropFirst().compactMap { Int($0.prefix { $0.isNumber }) }.reduce(0, +)
        }
        let handed = sum(a.stderr, "handed over ")
        #expect(handed == sum(b.stderr, "listeners and "), "what A handed over, B took: \(context)")
        if topology.moves {
            #expect(count("notices") == 0, "no client is asked to reconnect: \(context)")
            #expect(count("short_notices") == 0, "\(context)")
            #expect(count("reconnects") == 0, "no client reconnects: \(context)")
            // Every long-lived client, and any short one open at that moment.
            #expect(handed >= Self.connections, "\(context)")
        } else if topology == .fewerWorkers {
            // Old workers 0 and 1 hand theirs to new workers 0 and 1; worker 2 has no successor and drains.
            let notices = count("notices") ?? -1
            #expect(notices > 0 && notices < Self.connections, "worker 2's clients only: \(context)")
            #expect(handed > 0 && handed + notices >= Self.connections, "\(context)")
            #expect((count("reconnects") ?? 0) >= notices, "\(context)")
        } else {
            #expect(count("notices") == Self.connections, "every original connection is asked once: \(context)")
            #expect((count("reconnects") ?? 0) >= Self.connections, "\(context)")
        }
        #expect(count("long_open_at_stop") == Self.connections, "\(context)")
        #expect((count("short_attempts") ?? 0) > 0, "\(context)")
        #expect(count("short_completed") == count("short_attempts"), "\(context)")
        #expect(count("replies_received") == count("requests_sent"), "\(context)")
        if !topology.moves {
            // The notices are spread over drain_timeout by A's clock; the probe reads them late when the machine
            // is loaded, so the bound here is the one A's exit has above (how evenly they spread is perf's to show).
            let bound = Double(Self.drainSeconds + 5)
            let span = (figures["notice_span_s"] as? NSNumber)?.doubleValue
            #expect(span.map { $0 > 0 && $0 <= bound } == true, "\(context)")
            #expect(count("notice_max_ms").map { Double($0) <= bound * 1000 } == true, "\(context)")
        }

        #expect((try? EchoSocket(port: port).echo(7)) == true, "gateway B does not answer after the restart: \(b.stderr)")
        if masters { try expectSpread(port: port, over: bWorkers, of: b) }
        let admin = masters ? "admin endpoint for the box on" : "admin endpoint on"
        #expect(b.stderr.contains("\(admin) 127.0.0.1:\(adminPort)"), "B took the admin port: \(b.stderr)")
        // B's metrics (a master's sum its workers') count what it adopted: what A handed over.
        let metrics = try LoopbackHTTP.request("GET", "/metrics", port: adminPort).body
        func metric(_ family: String, _ outcome: String) -> Int {
            Int(metrics.split(separator: "\n").filter {
                $0.hasPrefix("\(family){") && $0.contains("outcome=\"\(outcome)\"")
            }.reduce(0) { $0 + (Double($1.split(separator: " ").last ?? "") ?? .nan) })
        }
        #expect(metric("gateway_handover_connections_total", "adopted") == handed, "\(metrics)")
        if let core, topology.forwards {
            try expectCoreKeptTheSessions(core, movedIn: metric("gateway_handover_sessions_total", "moved_in"),
                                          a: a.stderr, context: context)
        }
        kill(b.process.processIdentifier, SIGTERM)
        let bExited = b.waitForExit(by: Date(timeIntervalSinceNow: 15))
        #expect(bExited, "gateway B did not stop on SIGTERM: \(b.stderr)")
        if bExited {
            #expect(b.process.terminationReason == .exit && b.process.terminationStatus == 0, "B: \(b.stderr)")
        }
    }

    /// The core re-homed every moved session (MOVED) and ended none of them: no CLOSED, no timeout, and
    /// no MOVED for a session it had forgotten. Every busy client had announced its session, so at least
    /// those moved; A never gave up on a MOVING or lost a link mid-move.
    private func expectCoreKeptTheSessions(_ core: Child, movedIn: Int, a: String, context: String) throws {
        core.stop()
        let summary = try #require(core.stdout.split(separator: "\n").last { $0.hasPrefix("opened=") },
                                   "the core's summary: \(core.stdout)")
        func field(_ name: String) -> Int? {
            summary.split(separator: " ").first { $0.hasPrefix("\(name)=") }
                .flatMap { Int($0.dropFirst(name.count + 1)) }
        }
        print("core: \(summary)")
        let text = "core: \(summary)\n\(context)"
        #expect(field("moves_lost") == 0, "\(text)")
        #expect(field("moved_unknown") == 0, "\(text)")
        #expect(field("moved") == movedIn && movedIn >= Self.connections, "\(text)")
        #expect(field("moving") == movedIn, "every MOVING was answered and followed by MOVED: \(text)")
        #expect(!a.contains("did not answer MOVING") && !a.contains("died mid-move"), "\(text)")
    }

    /// New connections spread over B's workers as over a fresh master's (WorkersTests): 500 per worker
    /// puts +-25% at 5.6 (two workers) or 6.8 (three) standard deviations.
    private func expectSpread(port: Int, over workers: Int, of b: Child) throws {
        let pids = (0..<workers).compactMap { index in
            b.stderr.components(separatedBy: "worker \(index) started: pid ").dropFirst().last
                .flatMap { Int32($0.prefix { $0.isNumber }) }
        }
        try #require(pids.count == workers, "B's worker pids: \(b.stderr)")
        let clients = try (0..<500 * workers).map { _ in try EchoSocket(port: port) }
        let owners = try SocketOwners.waitForAll(clients.map(\.localPort), port: port, pids: pids)
        let counts = pids.map { pid in clients.count { owners[$0.localPort] == pid } }
        #expect(counts.allSatisfy { abs($0 - 500) <= 125 }, "B's workers after the take-over: \(counts)")
    }
}
