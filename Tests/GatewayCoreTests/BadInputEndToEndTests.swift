import Foundation
import Glibc
import XCTest
@_spi(Benchmarks) @testable import GatewayCore

/// Every kind of bad or awkward input, each next to a witness connection that
/// must keep echoing: one connection's trouble never touches another.
final class BadInputEndToEndTests: XCTestCase {
    private var witnessSeq: UInt32 = 0

    /// Starts a gateway per poller with a witness, runs `body`, checks the witness, stops.
    private func withWitness(_ configure: (inout GatewayConfig) -> Void = { _ in },
                             _ body: (PollerKind, Gateway, TestClient, LogRecorder) throws -> Void) throws {
        for poller in PollerKind.allCases {
            let log = LogRecorder()
            let gateway = try startGateway(poller, log: log) {
                $0.maxFrame = 4096
                configure(&$0)
            }
            let witness = try TestClient(port: gateway.port)
            checkWitness(witness, "\(poller) before")
            try body(poller, gateway, witness, log)
            checkWitness(witness, "\(poller) after")
            witness.close()
            gateway.stop()
            assertEveryCloseCounted(gateway, "\(poller)")
        }
    }

    private func checkWitness(_ witness: TestClient, _ label: String, file: StaticString = #filePath, line: UInt = #line) {
        witnessSeq += 1
        let f = ownedFrame(owner: 0xABCD, seq: witnessSeq, bodySize: Int(witnessSeq * 13 % 500))
        XCTAssertTrue(witness.echoes(f), "witness stopped echoing: \(label)", file: file, line: line)
    }

    private func localPort(_ client: TestClient) -> Int {
        var addr = sockaddr_in()
        var len = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(client.fd, $0, &len) }
        }
        return Int(UInt16(bigEndian: addr.sin_port))
    }

    /// Sends `bad` (after a good frame, which may or may not be answered) and
    /// expects that connection alone to be closed, counted and logged once.
    private func expectProtocolError(_ gateway: Gateway, _ log: LogRecorder, _ witness: TestClient, lengths: [UInt32],
                                     _ label: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let before = gateway.stats().closes(.protocolError)
        var ports: [Int] = []
        for (k, length) in lengths.enumerated() {
            let client = try TestClient(port: gateway.port)
            ports.append(localPort(client))
            try client.send(TestClient.frame(seq: 1, bodySize: 10) + TestClient.rawHeader(length: length) + TestClient.frame(seq: 2, bodySize: 3))
            XCTAssertTrue(client.isClosedByPeer(), "\(label): length \(length) did not close the connection", file: file, line: line)
            XCTAssertTrue(waitUntil { gateway.stats().closes(.protocolError) == before + UInt64(k + 1) },
                          "\(label): length \(length) not counted as a protocol error: \(gateway.stats().closes)", file: file, line: line)
            checkWitness(witness, "\(label) after length \(length)", file: file, line: line)
        }
        let warnings = log.messages(atLeast: .warning)
        for (port, length) in zip(ports, lengths) {
            let lines = warnings.filter { $0.contains("127.0.0.1:\(port)") }
            XCTAssertEqual(lines.count, 1, "\(label): length \(length) logged \(lines.count) times with the peer address: \(warnings)",
                           file: file, line: line)
            XCTAssertTrue(lines.first?.contains("\(length)") ?? false, "\(label): the log line names the length", file: file, line: line)
        }
    }

    func testLengthBelowTheHeaderSize() throws {
        try withWitness { poller, gateway, witness, log in
            try expectProtocolError(gateway, log, witness, lengths: [17, 0, 1], "\(poller)")
        }
    }

    func testLengthAboveMaxFrame() throws {
        try withWitness { poller, gateway, witness, log in
            // Exactly max_frame is fine.
            XCTAssertTrue(witness.echoes(TestClient.frame(seq: 77, bodySize: 4096 - FrameHeader.size)), "\(poller): a max_frame frame")
            try expectProtocolError(gateway, log, witness, lengths: [4097, 1 << 20, 0xFFFF_FFFF], "\(poller)")
        }
    }

    func testFramesSplitByteByByte() throws {
        try withWitness { poller, gateway, witness, _ in
            let client = try TestClient(port: gateway.port)
            let frames = [TestClient.frame(seq: 1, bodySize: 0), TestClient.frame(seq: 2, bodySize: 1),
                          TestClient.frame(seq: 3, bodySize: 57), ownedFrame(owner: 9, seq: 4, bodySize: 300)]
            let stream = frames.flatMap { $0 }
            for (i, byte) in stream.enumerated() {
                try client.send([byte])
                if i % 7 == 0 { usleep(200) }  // let some bytes arrive alone
            }
            for (i, f) in frames.enumerated() { XCTAssertEqual(client.receiveFrame(), f, "\(poller): frame \(i)") }
            checkWitness(witness, "\(poller) during a byte-by-byte client")
            XCTAssertTrue(client.echoes(TestClient.frame(seq: 5, bodySize: 20)), "\(poller): still fine afterwards")
        }
    }

    func testThousandCoalescedFramesInOneSend() throws {
        try withWitness { poller, gateway, witness, _ in
            let client = try TestClient(port: gateway.port)
            var random = TestRandom(seed: 42)
            for round in 0..<3 {
                var stream: [UInt8] = []
                for i in 0..<1000 { stream += ownedFrame(owner: 5, seq: UInt32(round * 1000 + i), bodySize: random.below(120)) }
                XCTAssertEqual(client.exchange(stream, expect: stream.count), stream, "\(poller): round \(round)")
                checkWitness(witness, "\(poller) round \(round)")
            }
        }
    }

    func testResetMidFrame() throws {
        try withWitness { poller, gateway, witness, _ in
            let peerBefore = gateway.stats().closes(.peer)
            for k in 0..<5 {
                let client = try TestClient(port: gateway.port)
                XCTAssertTrue(client.echoes(TestClient.frame(seq: 1, bodySize: 40)))
                try client.send(Array(TestClient.frame(seq: 2, bodySize: 100).prefix(3 + k * 20)))
                client.resetOnClose()
                client.close()
                checkWitness(witness, "\(poller) after reset \(k)")
            }
            XCTAssertTrue(waitUntil(seconds: 3) { gateway.stats().closes(.peer) == peerBefore + 5 }, "\(poller): resets counted as peer closes: \(gateway.stats().closes)")
            XCTAssertTrue(waitUntil(seconds: 3) { gateway.stats().connectionsOpen == 1 }, "\(poller): only the witness left, \(gateway.stats().connectionsOpen) slots held")
        }
    }

    /// The client half-closes right after part of a frame (both usually arrive
    /// together): the gateway must see the end of stream and close.
    func testHalfCloseMidFrame() throws {
        try withWitness { poller, gateway, witness, _ in
            let clients = try (0..<8).map { _ in try TestClient(port: gateway.port, timeoutSeconds: 3) }
            for (k, client) in clients.enumerated() {
                try client.send(Array(TestClient.frame(seq: 2, bodySize: 100).prefix(1 + k * 9)))
                client.shutdownWrite()
            }
            let failures = Failures()
            runThreads(clients.count) { k in
                if !clients[k].isClosedByPeer() { failures.add("client \(k) (\(1 + k * 9) bytes of a frame) never closed") }
            }
            failures.assertNone("\(poller): half-closed mid-frame")
            checkWitness(witness, "\(poller) after half-closes")
            XCTAssertTrue(waitUntil(seconds: 3) { gateway.stats().connectionsOpen == 1 }, "\(poller): \(gateway.stats().connectionsOpen) slots held")
            XCTAssertEqual(gateway.stats().closes(.peer), 8, "\(poller): \(gateway.stats().closes)")
        }
    }

    /// Half-close after whole frames: every reply arrives, then the end of stream.
    func testHalfCloseAfterFramesGetsEveryReplyThenClose() throws {
        try withWitness { poller, gateway, witness, _ in
            let failures = Failures()
            let port = gateway.port
            runThreads(4) { k in
                guard let client = try? TestClient(port: port, timeoutSeconds: 3) else { return failures.add("client \(k): connect") }
                let frames = (0..<5).map { ownedFrame(owner: UInt32(k), seq: UInt32($0), bodySize: $0 * 100) }
                guard (try? client.send(frames.flatMap { $0 })) != nil else { return failures.add("client \(k): send") }
                client.shutdownWrite()
                for (i, f) in frames.enumerated() where client.receiveFrame() != f { return failures.add("client \(k): reply \(i)") }
                if !client.isClosedByPeer() { failures.add("client \(k): no close after the replies") }
            }
            failures.assertNone("\(poller): half-close after whole frames")
            checkWitness(witness, "\(poller) after half-closes")
        }
    }

    func testConnectionsBeyondMaxConnectionsAreClosedAndCounted() throws {
        try withWitness({ $0.maxConnections = 4 }) { poller, gateway, witness, _ in
            XCTAssertTrue(waitUntil { gateway.stats().connectionsOpen == 1 })
            let others = try (0..<3).map { _ in try TestClient(port: gateway.port) }
            for (k, c) in others.enumerated() { XCTAssertTrue(c.echoes(TestClient.frame(seq: UInt32(k), bodySize: 9)), "\(poller): client \(k)") }
            XCTAssertEqual(gateway.stats().connectionsOpen, 4)
            for extra in 0..<3 {
                let over = try TestClient(port: gateway.port)  // the kernel accepts; the gateway closes at once
                XCTAssertTrue(over.isClosedByPeer(), "\(poller): connection over capacity \(extra) was not closed")
                XCTAssertTrue(waitUntil { gateway.stats().closes(.overCapacity) == UInt64(extra + 1) }, "\(poller): \(gateway.stats().closes)")
                checkWitness(witness, "\(poller) after over-capacity \(extra)")
            }
            XCTAssertEqual(gateway.stats().accepted, 4, "\(poller): over-capacity connections are not accepted")
            // A freed slot takes a new connection again.
            others[0].close()
            XCTAssertTrue(waitUntil { gateway.stats().connectionsOpen == 3 }, "\(poller)")
            let again = try TestClient(port: gateway.port)
            XCTAssertTrue(again.echoes(TestClient.frame(seq: 50, bodySize: 50)), "\(poller): new connection after a slot was freed")
            for c in others[1...] { XCTAssertTrue(c.echoes(TestClient.frame(seq: 60, bodySize: 5)), "\(poller)") }
        }
    }

    /// A client that sends a lot and never reads: its send ring stays full
    /// while the socket is not writable, so it is closed as a slow consumer.
    func testClientThatStopsReadingIsClosedAsSlowConsumer() throws {
        try withWitness({ $0.ringCapacity = 4; $0.writeStallTimeout = 1; $0.maxFrame = 1 << 20 }) { poller, gateway, witness, _ in
            let slow = try TestClient(port: gateway.port, receiveBuffer: 4096)
            let frame = ownedFrame(owner: 66, seq: 1, bodySize: 32 << 10)
            var sentBytes = 0
            let deadline = Date().addingTimeInterval(10)  // hang guard
            while gateway.stats().closes(.slowConsumer) == 0 && Date() < deadline && sentBytes < 256 << 20 {
                let n = frame.withUnsafeBytes { send(slow.fd, $0.baseAddress!, $0.count, Int32(MSG_DONTWAIT | MSG_NOSIGNAL)) }
                if n > 0 {
                    sentBytes += n
                    if n < frame.count { break }  // the frame boundary is lost: stop sending, let the stall be noticed
                } else if n < 0 && errno != EAGAIN && errno != EINTR {
                    break  // the gateway closed it already
                } else {
                    usleep(5_000)
                }
            }
            XCTAssertTrue(waitUntil(seconds: 10) { gateway.stats().closes(.slowConsumer) == 1 },
                          "\(poller): not closed as a slow consumer after \(sentBytes) bytes: \(gateway.stats().closes)")
            XCTAssertTrue(slow.isClosedByPeer(), "\(poller): the slow consumer's socket is closed")
            checkWitness(witness, "\(poller) after the slow consumer")
        }
    }
}
