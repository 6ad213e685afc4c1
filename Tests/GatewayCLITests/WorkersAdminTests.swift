import Foundation
@testable import GatewayCLI
import Testing

/// The master's --admin endpoint for the whole box, and a worker that exits straight after every start.
@Suite(.serialized) struct WorkersAdminTests {
    /// The sum over workers of one series in the master's exposition.
    static func sum(_ metric: String, in text: String) -> Double {
        text.split(separator: "\n").filter { $0.hasPrefix(metric + "{worker=") }.reduce(0) {
            $0 + (Double($1.split(separator: " ").last ?? "") ?? .nan)
        }
    }

    @Test(.timeLimit(.minutes(3)))
    func masterEndpointSumsTheWorkersAndReportsOneThatCannotStart() throws {
        let file = try TemporaryFile("max_frame: 65536\n")
        defer { file.remove() }
        let master = try GatewayProcess(["--config", file.path, "--port", "0", "--workers", "2",
                                         "--admin", "127.0.0.1:0", "--stats-interval", "0"])
        defer { master.stop() }
        let admin = try master.waitForPort(prefix: "admin endpoint for the box on 127.0.0.1:")
        let port = try master.waitForPort(prefix: "workers on 127.0.0.1:")
        let pids = try (0..<2).map { try master.waitForPid(of: $0) }
        #expect(try LoopbackHTTP.request("GET", "/healthz", port: admin).status == 200)

        // A known number of connections, each echoed, so each worker has counted it.
        let clients = try (0..<40).map { i in
            let c = try EchoSocket(port: port)
            #expect(try c.echo(UInt32(i)))
            return c
        }
        let owners = try SocketOwners.waitForAll(clients.map(\.localPort), port: port, pids: pids)
        let metrics = try LoopbackHTTP.request("GET", "/metrics", port: admin).body
        #expect(Self.sum("gateway_connections_open", in: metrics) == 40, "\(metrics)")
        #expect(Self.sum("gateway_connections_accepted_total", in: metrics) == 40, "\(metrics)")
        for (i, pid) in pids.enumerated() {
            let held = clients.count { owners[$0.localPort] == pid }
            #expect(metrics.contains("gateway_connections_open{worker=\"\(i)\"} \(Double(held))"), "\(metrics)")
        }
        #expect(metrics.components(separatedBy: "# TYPE gateway_connections_open gauge").count == 2, "one TYPE line")
        let stats = try LoopbackHTTP.request("GET", "/stats", port: admin).body
        let object = try #require(try JSONSerialization.jsonObject(with: Data(stats.utf8)) as? [String: Any])
        let totals = try #require(object["totals"] as? [String: Any])
        #expect((totals["connectionsOpen"] as? NSNumber)?.intValue == 40, "\(stats)")
        #expect((object["workers"] as? [Any])?.count == 2, "\(stats)")

        // The file goes bad, then worker 1 dies: each replacement reads it, says why, and exits.
        try "max_frame: banana\n".write(toFile: file.path, atomically: true, encoding: .utf8)
        kill(pids[1], SIGKILL)
        _ = try master.waitFor("worker 1 could not start: invalid max_frame 'banana'", count: 3)
        _ = try master.waitFor("worker 1 exits straight after every start")
        let health = try LoopbackHTTP.request("GET", "/healthz", port: admin)
        #expect(health.status == 503 && health.body.contains("worker 1 exits straight after every start"),
                "\(health)")
        let failing = try LoopbackHTTP.request("GET", "/metrics", port: admin).body
        #expect(failing.contains("gateway_worker_failing{worker=\"1\"} 1"), "\(failing)")
        #expect(failing.contains("gateway_worker_up{worker=\"1\"} 0"), "\(failing)")
        // Worker 0 serves on meanwhile.
        for c in clients where owners[c.localPort] == pids[0] { #expect(try c.echo(100)) }

        // Mended: the next restart serves, and once it has run steadily the box is healthy again.
        try "max_frame: 65536\n".write(toFile: file.path, atomically: true, encoding: .utf8)
        _ = try master.waitFor("worker 1 serves again after failing", seconds: 90)
        #expect(try LoopbackHTTP.request("GET", "/healthz", port: admin).status == 200)
    }

    /// The admin port in use: the start stops, naming it, and no worker is left running. Workers' own
    /// endpoints take free loopback ports, so the next port being taken changes nothing.
    @Test(.timeLimit(.minutes(1)))
    func adminPortInUseStopsTheStartAndLeavesNoWorker() throws {
        // Another gateway holds the port.
        let holder = try GatewayProcess(["--port", "0", "--admin", "127.0.0.1:0", "--stats-interval", "0"])
        defer { holder.stop() }
        let taken = try holder.waitForPort(prefix: "admin endpoint on 127.0.0.1:")
        let master = try GatewayProcess(["--port", "0", "--workers", "2", "--stats-interval", "0",
                                         "--admin", "127.0.0.1:\(taken)"])
        master.process.waitUntilExit()
        #expect(master.process.terminationStatus == 1)
        #expect(master.log.contains("invalid admin '127.0.0.1:\(taken)'"), "\(master.log)")
        let pids = try (0..<2).map { try master.waitForPid(of: $0) }
        #expect(pids.allSatisfy(SocketOwners.isDead), "\(master.log)")
    }
}

/// `--workers auto` follows the CPU affinity it is started with.
@Suite struct WorkersAutoTests {
    @Test(.timeLimit(.minutes(1)))
    func oneCoreByTasksetGivesOneWorker() throws {
        let taskset = try #require(TestProcess.onPath("taskset"), "taskset (util-linux) is on the path")
        let process = try TestProcess(taskset, ["-c", "0", try TestProcess.built("gateway").path, "--port", "0",
                                                "--workers", "auto", "--stats-interval", "0"])
        defer { process.stop() }
        let log = try process.waitFor("listening on")
        #expect(log.contains("workers auto: 1 (1 cores in the affinity mask"), "\(log)")
        #expect(!log.contains("master "), "one worker is no master: \(log)")
    }

    @Test func quotaIsTheSmallestAlongTheCgroupPath() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("cgroup-\(UUID().uuidString)")
        defer { try? FileManager.default.removeItem(at: root) }
        let leaf = root.appendingPathComponent("a/b")
        try FileManager.default.createDirectory(at: leaf, withIntermediateDirectories: true)
        let cgroups = root.appendingPathComponent("cgroup").path
        try "0::/a/b\n".write(toFile: cgroups, atomically: true, encoding: .utf8)
        #expect(UsableCores.quota(cgroups: cgroups, root: root.path) == nil)
        try "max 100000\n".write(to: leaf.appendingPathComponent("cpu.max"), atomically: true, encoding: .utf8)
        #expect(UsableCores.quota(cgroups: cgroups, root: root.path) == nil)
        try "150000 100000\n".write(to: root.appendingPathComponent("a/cpu.max"), atomically: true, encoding: .utf8)
        #expect(UsableCores.quota(cgroups: cgroups, root: root.path) == 1.5)
        #expect(UsableCores(affinity: 8, quota: 1.5).count == 2)
        #expect(UsableCores(affinity: 1, quota: 3).count == 1)
        #expect(UsableCores(affinity: 4, quota: nil).count == 4)
    }
}
