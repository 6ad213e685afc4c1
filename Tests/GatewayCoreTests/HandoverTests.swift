import XCTest
import Foundation
import Glibc
@_spi(Benchmarks) @testable import GatewayCore

/// A hot restart's hand-over of live connections, in process, under both pollers (and ThreadSanitizer
/// in CI): gateway A quiesces its client and reads its state, gateway B adopts it (its descriptor
/// duplicated, as SCM_RIGHTS would), and the client never notices.
final class HandoverTests: XCTestCase {
    /// Moves A's clients into B in one batch, as the control socket would; returns what travelled.
    private func handOver(from a: Gateway, to b: Gateway, expect count: Int,
                          file: StaticString = #filePath, line: UInt = #line) throws -> [MovedConnection] {
        XCTAssertTrue(a.holdAccepting(true), file: file, line: line)
        let export = a.exportConnections()
        let batch = export.quiesce(upTo: 200, within: 10_000_000_000)
        XCTAssertTrue(export.isDone, file: file, line: line)
        XCTAssertEqual(batch.connections.count, count, "quiesced", file: file, line: line)
        var copies = batch.connections
        for i in copies.indices { copies[i].fd = dup(copies[i].fd) }
        export.handedOver(batch)
        b.adopt(copies)
        return batch.connections
    }

    func testFrameHalfReceivedCompletesOnTheNewProcess() throws {
        for poller in [PollerKind.epoll, .poll] {
            let a = try startGateway(poller)
            defer { a.stop() }
            let b = try startGateway(poller)
            defer { b.stop() }
            let client = try TestClient(port: a.port)
            let first = TestClient.frame(seq: 1, bodySize: 40)
            XCTAssertTrue(client.echoes(first), "A serves it (\(poller))")
            let second = TestClient.frame(seq: 2, bodySize: 100)
            try client.send(Array(second.prefix(30)))
            XCTAssertTrue(waitUntil { a.stats().bytesIn == UInt64(first.count + 30) }, "A read the half (\(poller))")

            let moved = try handOver(from: a, to: b, expect: 1)
            XCTAssertEqual(moved.first?.input, Array(second.prefix(30)), "the half frame travels (\(poller))")
            XCTAssertEqual(moved.first?.output, [], "nothing left to write (\(poller))")

            try client.send(Array(second.dropFirst(30)))
            XCTAssertEqual(client.receiveFrame(), second, "B completes the frame A began (\(poller))")
            XCTAssertTrue(client.echoes(TestClient.frame(seq: 3, bodySize: 7)), "and serves on (\(poller))")
            XCTAssertEqual(b.stats().framesIn, 2, "\(poller)")
            XCTAssertTrue(waitUntil { a.stats().connectionsOpen == 0 }, "A let go of it (\(poller))")
            XCTAssertEqual(a.stats().closes(.handedOver), 1, "\(poller)")
            XCTAssertEqual(a.stats().closes(.peer), 0, "\(poller)")
            XCTAssertEqual([a.stats().handedOver, a.stats().handoverLost, a.stats().handoverAdopted], [1, 0, 0])
            XCTAssertEqual([b.stats().handedOver, b.stats().handoverAdopted], [0, 1], "\(poller)")
        }
    }

    func testReplyHalfWrittenCompletes() throws {
        for poller in [PollerKind.epoll, .poll] {
            // 12 MB: more than the kernel's buffers can hold (tcp_wmem's ceiling is 4 MB, the client
            // reads into 4 KB), so the echo is half written by construction when A lets go.
            let size = 12 << 20
            let configure = { (c: inout GatewayConfig) in
                c.maxFrame = 16 << 20
                c.maxQueuedBytes = 64 << 20
            }
            let a = try startGateway(poller, configure)
            defer { a.stop() }
            let b = try startGateway(poller, configure)
            defer { b.stop() }
            let client = try TestClient(port: a.port, timeoutSeconds: 20, receiveBuffer: 4096)
            var random = TestRandom(seed: 20)
            let body = (0..<(size - FrameHeader.size)).map { _ in UInt8(truncatingIfNeeded: random.next()) }
            let frame = TestClient.frame(seq: 9, body: body)
            try client.send(frame)
            XCTAssertTrue(waitUntil(seconds: 20) { a.stats().bytesOut > 0 }, "A began the echo (\(poller))")

            let moved = try handOver(from: a, to: b, expect: 1)
            let output = try XCTUnwrap(moved.first?.output)
            XCTAssertEqual(moved.first?.input, [], "the frame was dealt (\(poller))")
            XCTAssertGreaterThan(output.count, 0, "a reply half written travels (\(poller))")
            XCTAssertEqual(UInt64(output.count) + a.stats().bytesOut, UInt64(size), "\(poller)")
            XCTAssertEqual(output, Array(frame.suffix(output.count)), "its unwritten rest (\(poller))")

            XCTAssertEqual(client.receive(size), frame, "the whole echo, part from A, the rest from B (\(poller))")
            XCTAssertTrue(client.echoes(TestClient.frame(seq: 10, bodySize: 5)), "\(poller)")
            // Send counts its bytes after the write that the client may already have read: wait for the count.
            let bOut = UInt64(output.count + FrameHeader.size + 5)
            XCTAssertTrue(waitUntil(seconds: 10) { b.stats().bytesOut == bOut }, "\(b.stats().bytesOut) (\(poller))")
        }
    }

    /// Frames pipelined and not yet dealt travel as input, in order, with the half frame after them.
    func testFramesNotYetDealtTravelInOrder() throws {
        for poller in [PollerKind.epoll, .poll] {
            let a = try startGateway(poller)
            defer { a.stop() }
            let b = try startGateway(poller)
            defer { b.stop() }
            let clients = try (0..<50).map { _ in try TestClient(port: a.port) }
            var sent: [[UInt8]] = []
            for (i, c) in clients.enumerated() {
                let frames = (0..<20).flatMap {
                    TestClient.frame(seq: UInt32(i * 100 + $0), uid: UInt32(i), bodySize: $0)
                }
                try c.send(frames)
                sent.append(frames)
            }
            _ = try handOver(from: a, to: b, expect: 50)
            for (i, c) in clients.enumerated() {
                XCTAssertEqual(c.receive(sent[i].count), sent[i], "client \(i): every echo once, in order (\(poller))")
                XCTAssertTrue(c.echoes(TestClient.frame(seq: 7, bodySize: 3)), "\(poller)")
            }
            // Counted once per batch, after the replies went: looked at until the last batch is done.
            XCTAssertTrue(waitUntil { a.stats().framesOut + b.stats().framesOut == 50 * 21 }, "each once (\(poller))")
            XCTAssertEqual(a.stats().handedOver, 50, "\(poller)")
            XCTAssertEqual(b.stats().handoverAdopted, 50, "\(poller)")
        }
    }
}
