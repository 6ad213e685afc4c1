import Foundation
import Glibc
import TestSupport
import Testing

/// `--control-socket` in use by a running gateway stops a start before it listens. A start that failed
/// after listening would close the connections it had accepted: at a hot restart to fewer workers, the
/// old master restarted a worker that had handed its clients over, and the restarted worker accepted
/// some before it found its control socket held by its successor.
@Suite struct ControlSocketTests {
    /// The port is taken as well (a plain listening socket, no SO_REUSEPORT), so the error names whichever check came first: the control socket.
    @Test(.timeLimit(.minutes(1)), arguments: [["--workers", "1"], ["--workers", "2"]])
    func aControlSocketInUseStopsTheStartBeforeItListens(_ workers: [String]) throws {
        let path = "/tmp/gateway-control-\(UUID().uuidString.prefix(8)).sock"
        let holder = try GatewayProcess(["--port", "0", "--control-socket", path, "--stats-interval", "0"])
        defer { holder.stop() }
        _ = try holder.waitFor("listening on")
        let held = try LoopbackListener(backlog: 1)
        let second = try GatewayProcess(["--port", "\(held.port)", "--control-socket", path,
                                         "--stats-interval", "0"] + workers)
        second.process.waitUntilExit()
        let log = second.log
        #expect(second.process.terminationStatus == 1, "\(log)")
        #expect(log.contains("control socket \(path) is in use by a running gateway"), "\(log)")
        #expect(!log.contains("cannot listen"), "the control socket is checked first: \(log)")
    }
}
