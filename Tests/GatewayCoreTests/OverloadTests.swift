import Foundation
import Glibc
import XCTest
@_spi(Benchmarks) @testable import GatewayCore

/// max_buffered_bytes (issue 10, item 6): past it the gateway stops reading clients
/// instead of growing, says so, and resumes once its buffers have drained.
final class OverloadTests: XCTestCase {
    func testPastMaxBufferedBytesClientsAreNotReadUntilBuffersDrain() throws {
        let log = LogRecorder()
        let gateway = try startGateway(.epoll, log: log) {
            $0.maxFrame = 1 << 20
            $0.maxBufferedBytes = 1 << 20
            $0.writeStallTimeout = 2
        }
        defer { gateway.stop() }
        let witness = try TestClient(port: gateway.port, timeoutSeconds: 15)
        XCTAssertTrue(witness.echoes(TestClient.frame(seq: 1, bodySize: 100)))
        // Clients that send a lot and read nothing: their frames and echoes hold the buffers.
        let stuck = try (0..<4).map { _ in try TestClient(port: gateway.port, receiveBuffer: 4096) }
        let frame = TestClient.frame(seq: 2, bodySize: 60_000)
        var at = [Int](repeating: 0, count: stuck.count)  // into each one's frame: whole frames, however split
        let deadline = Date().addingTimeInterval(10)
        while gateway.stats().sheddingSpells == 0 && Date() < deadline {
            var progressed = false
            for (i, c) in stuck.enumerated() {
                let n = frame.withUnsafeBytes {
                    send(c.fd, $0.baseAddress! + at[i], $0.count - at[i], Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
                }
                if n > 0 {
                    at[i] = (at[i] + n) % frame.count
                    progressed = true
                }
            }
            if !progressed { usleep(5_000) }
        }
        XCTAssertGreaterThanOrEqual(gateway.stats().sheddingSpells, 1, "shedding began: \(gateway.stats().bufferedBytes)")
        XCTAssertTrue(waitUntil { log.messages(atLeast: .warning).contains { $0.contains("over max_buffered_bytes") } })
        // While they keep sending, the buffers stay near the cap instead of growing.
        var most: UInt64 = 0
        for _ in 0..<50 {
            for (i, c) in stuck.enumerated() {
                let n = frame.withUnsafeBytes {
                    send(c.fd, $0.baseAddress! + at[i], $0.count - at[i], Int32(MSG_DONTWAIT | MSG_NOSIGNAL))
                }
                if n > 0 { at[i] = (at[i] + n) % frame.count }
            }
            most = max(most, gateway.stats().bufferedBytes)
            usleep(10_000)
        }
        XCTAssertLessThanOrEqual(most, UInt64(1 << 20) + (512 << 10), "bounded near max_buffered_bytes")
        for c in stuck { c.resetOnClose(); c.close() }
        XCTAssertTrue(waitUntil { !gateway.stats().shedding }, "it resumes once they are gone")
        XCTAssertTrue(witness.echoes(TestClient.frame(seq: 3, bodySize: 100)), "the witness is served")
        XCTAssertLessThan(gateway.stats().bufferedBytes, UInt64(1 << 20))
    }
}
