import Foundation
import Glibc
import XCTest
@_spi(Benchmarks) @testable import GatewayCore

/// Back-pressure before closing: a client whose replies pile up stops being read and
/// is closed as a slow consumer only after write_stall_timeout without write progress.
final class SlowConsumerTests: XCTestCase {
    /// The shipped bug: 256 KiB frames pipelined faster than the client reads them (64 KiB
    /// every 10 ms) filled the send ring and the client was closed at once. It must be
    /// paused instead, and get every reply, byte for byte, in order.
    func testClientPipeliningFasterThanItReadsIsPausedNotClosed() throws {
        for poller in PollerKind.allCases {
            let gateway = try startGateway(poller) {
                $0.maxFrame = 1 << 20
                $0.writeStallTimeout = 2
            }
            defer { gateway.stop() }
            let witness = try TestClient(port: gateway.port)
            let client = try TestClient(port: gateway.port, timeoutSeconds: 20)
            let frames = 60
            var stream: [UInt8] = []
            for n in 0..<frames { stream += TestClient.frame(seq: UInt32(n), uid: 5, bodySize: (256 << 10) - 18 - n) }
            let request = stream
            let fd = client.fd
            let writer = Thread {
                var sent = 0
                while sent < request.count {
                    let n = request.withUnsafeBytes { send(fd, $0.baseAddress! + sent, $0.count - sent, Int32(MSG_NOSIGNAL)) }
                    if n <= 0 { break }
                    sent += n
                }
            }
            writer.start()
            var received: [UInt8] = []
            received.reserveCapacity(stream.count)
            var buffer = [UInt8](repeating: 0, count: 64 << 10)
            let deadline = Date().addingTimeInterval(60)  // hang guard
            while received.count < stream.count && Date() < deadline {
                let n = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress!, $0.count, 0) }
                if n <= 0 { break }
                received += buffer[..<n]
                usleep(10_000)
            }
            XCTAssertEqual(received.count, stream.count, "\(poller): every reply arrived")
            XCTAssertTrue(received == stream, "\(poller): byte for byte, in order")
            XCTAssertEqual(gateway.stats().closes(.slowConsumer), 0, "\(poller): paused, not closed")
            XCTAssertTrue(witness.echoes(TestClient.frame(seq: 1, bodySize: 100)), "\(poller): the witness is served")
        }
    }
}
