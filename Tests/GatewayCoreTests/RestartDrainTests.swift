import XCTest
import Foundation
@_spi(Benchmarks) @testable import GatewayCore

/// Gateway.drainForRestart in process, under both pollers (and ThreadSanitizer in CI): Monitor asks
/// each client to reconnect, spread over drain_timeout; Deal queues the frame after what it dealt;
/// the clients keep being served until they leave; then the gateway stops by itself.
final class RestartDrainTests: XCTestCase {
    func testEveryClientIsAskedOnceAndServedUntilItLeaves() throws {
        for poller in [PollerKind.epoll, .poll] {
            let gateway = try startGateway(poller) {
                $0.drainTimeout = 2
                $0.tickMilliseconds = 10
            }
            defer { gateway.stop() }
            let clients = try (0..<30).map { _ in try TestClient(port: gateway.port) }
            for (i, c) in clients.enumerated() {
                XCTAssertTrue(c.echoes(TestClient.frame(seq: UInt32(i), bodySize: 10)), "\(poller)")
            }
            gateway.drainForRestart()
            XCTAssertTrue(waitUntil { gateway.isDraining && !gateway.isAccepting }, "\(poller)")
            var left: [UInt32] = []
            for (i, c) in clients.enumerated() {
                let notice = try XCTUnwrap(c.receiveFrame(), "client \(i) asked to reconnect (\(poller))")
                let header = notice.withUnsafeBytes { FrameHeader(decoding: $0.baseAddress!) }
                XCTAssertEqual(header.cmd, ReservedCommand.pleaseReconnect)
                XCTAssertEqual(header.length, 22)
                let milliseconds = notice[18...].reduce(UInt32(0)) { $0 << 8 | UInt32($1) }
                left.append(milliseconds)
                XCTAssertLessThanOrEqual(milliseconds, 2000)
                // Still served after the notice, until it leaves.
                XCTAssertTrue(c.echoes(TestClient.frame(seq: 1000 + UInt32(i), bodySize: 10)), "\(poller)")
                c.close()
            }
            // Spread: the first was told it had (nearly) the whole window, later ones less.
            XCTAssertGreaterThan(left.first!, left.last!, "notices spread over the window (\(poller))")
            XCTAssertTrue(waitUntil(seconds: 10) { gateway.hasStopped }, "stops once every client left (\(poller))")
            gateway.stop()
            XCTAssertEqual(gateway.stats().reconnectNotices, 30)
            assertEveryCloseCounted(gateway, "\(poller)")
        }
    }

    /// A client that ignores the notice is closed at the end of the window, after the replies to
    /// what the gateway read.
    func testClientThatStaysIsClosedAtTheEndOfTheWindow() throws {
        let gateway = try startGateway(.epoll) {
            $0.drainTimeout = 1
            $0.tickMilliseconds = 10
        }
        defer { gateway.stop() }
        let client = try TestClient(port: gateway.port)
        XCTAssertTrue(client.echoes(TestClient.frame(seq: 1, bodySize: 10)))
        gateway.drainForRestart()
        _ = try XCTUnwrap(client.receiveFrame())
        XCTAssertTrue(waitUntil(seconds: 10) { gateway.hasStopped })
        XCTAssertNil(client.receiveFrame(), "closed by the gateway")
        gateway.stop()
        XCTAssertEqual(gateway.stats().closes(.shutdown), 1)
    }

    /// Reloads while clients echo: every thread takes new settings at its tick, nothing is lost.
    func testReconfigureWhileServing() throws {
        var config = GatewayConfig()
        let gateway = try startGateway(.epoll) {
            $0.tickMilliseconds = 5
            config = $0
        }
        defer { gateway.stop() }
        let clients = try (0..<8).map { _ in try TestClient(port: gateway.port) }
        let base = config
        let reloads = Thread {
            for n in 0..<100 {
                var next = base
                next.idleTimeout = 100 + n
                next.writeStallTimeout = 10 + n % 5
                next.maxConnsPerIP = n % 2 == 0 ? 0 : 1000
                next.floodFramesPerSecond = n % 3 == 0 ? 0 : 1_000_000
                try? gateway.reconfigure(next)
            }
        }
        reloads.start()
        for round in 0..<50 {
            for (i, c) in clients.enumerated() {
                XCTAssertTrue(c.echoes(TestClient.frame(seq: UInt32(round * 100 + i), bodySize: 64)))
            }
        }
        XCTAssertTrue(waitUntil(seconds: 30) { reloads.isFinished })
        // Release builds would close the clients at their last use, before this count.
        withExtendedLifetime(clients) { XCTAssertEqual(gateway.stats().closes.reduce(0, +), 0) }
    }
}
