import Foundation
import Glibc
import XCTest
@_spi(Benchmarks) @testable import GatewayCore

/// Idle timeouts and the graceful stop, on both pollers.
final class LifecycleEndToEndTests: XCTestCase {
    /// idle_timeout 1 s: a client that never sends and one that went quiet
    /// are closed (and counted); a witness that keeps talking is not.
    func testIdleTimeoutClosesSilentClientsOnly() throws {
        for poller in PollerKind.allCases {
            let gateway = try startGateway(poller) {
                $0.idleTimeout = 1
                $0.tickMilliseconds = 50
            }
            let witness = try TestClient(port: gateway.port)
            let start = Date()
            let silent = try TestClient(port: gateway.port)
            let quiet = try TestClient(port: gateway.port)
            XCTAssertTrue(quiet.echoes(TestClient.frame(seq: 1, bodySize: 5)))
            let silentClosed = AtomicInt()
            let witnessFailures = Failures()
            let talker = OSThread(name: "test-witness") {
                var seq: UInt32 = 0
                // Talks every 100 ms until both quiet clients are gone, then a little longer.
                let deadline = Date().addingTimeInterval(8)
                var after = 0
                while after < 5 && Date() < deadline {
                    seq += 1
                    if !witness.echoes(ownedFrame(owner: 1, seq: seq, bodySize: Int(seq % 50))) {
                        witnessFailures.add("\(poller): witness lost at seq \(seq)")
                        return
                    }
                    if silentClosed.load() == 2 { after += 1 }
                    usleep(100_000)
                }
            }
            XCTAssertTrue(silent.isClosedByPeer(), "\(poller): a client that never sent was not closed")
            let silentAt = Date().timeIntervalSince(start)
            XCTAssertTrue(quiet.isClosedByPeer(), "\(poller): a client that went quiet was not closed")
            silentClosed.store(2)
            talker.join()
            witnessFailures.assertNone("\(poller)")
            XCTAssertGreaterThanOrEqual(silentAt, 0.9, "\(poller): closed before the idle timeout")
            XCTAssertTrue(waitUntil { gateway.stats().closes(.idle) == 2 }, "\(poller): idle closes \(gateway.stats().closes)")
            XCTAssertTrue(witness.echoes(TestClient.frame(seq: 99, bodySize: 9)), "\(poller): witness after the timeouts")
            XCTAssertEqual(gateway.stats().closes(.idle), 2, "\(poller): the witness was not timed out")
            witness.close()
            gateway.stop()
            assertEveryCloseCounted(gateway, "\(poller)")
        }
    }

    /// A poller that fails (its epoll instance replaced behind its back, so epoll_wait returns
    /// EINVAL) stops the gateway, logged and reported by `failure`, and closes its clients,
    /// rather than leaving Monitor spinning on "nothing ready".
    func testBrokenPollerStopsTheGateway() throws {
        let log = LogRecorder()
        let before = eventpollDescriptors()
        let gateway = try startGateway(.epoll, log: log)
        let epoll = eventpollDescriptors().subtracting(before)
        XCTAssertEqual(epoll.count, 1, "the gateway's one epoll instance")
        let client = try TestClient(port: gateway.port)
        XCTAssertTrue(client.echoes(TestClient.frame(seq: 1, bodySize: 5)))
        XCTAssertNil(gateway.failure)
        let devNull = open("/dev/null", O_RDONLY | O_CLOEXEC)
        XCTAssertEqual(dup2(devNull, epoll.first!), epoll.first!)
        close(devNull)
        XCTAssertTrue(waitUntil(seconds: 20) { gateway.hasStopped }, "the gateway did not stop")
        XCTAssertTrue(gateway.failure?.contains("epoll_wait") ?? false, "failure: \(gateway.failure ?? "none")")
        XCTAssertTrue(log.messages(atLeast: .critical).contains { $0.contains("epoll_wait") },
                      "logged: \(log.messages(atLeast: .error))")
        XCTAssertTrue(client.isClosedByPeer(), "the client was not closed")
        gateway.stop()
        assertEveryCloseCounted(gateway, "broken poller")
    }

    /// A gateway that sat with no connection for longer than idle_timeout must
    /// not time out the next client while it is talking: the idle clock of a
    /// new connection starts when it arrives.
    func testIdleTimeoutAfterAQuietPeriodSparesAnActiveClient() throws {
        let failures = Failures()
        runThreads(PollerKind.allCases.count) { p in
            let poller = PollerKind.allCases[p]
            do {
                let gateway = try startGateway(poller) {
                    $0.idleTimeout = 1
                    $0.tickMilliseconds = 10
                }
                usleep(1_300_000)  // no connections for longer than idle_timeout
                let client = try TestClient(port: gateway.port, timeoutSeconds: 3)
                for seq in 0..<6 {
                    if !client.echoes(TestClient.frame(seq: UInt32(seq), bodySize: 10)) {
                        failures.add("\(poller): an active client was closed at echo \(seq); closes \(gateway.stats().closes)")
                        break
                    }
                    usleep(100_000)
                }
                if gateway.stats().closes(.idle) != 0 { failures.add("\(poller): idle closes \(gateway.stats().closes(.idle))") }
                client.close()
                gateway.stop()
            } catch {
                failures.add("\(poller): \(error)")
            }
        }
        failures.assertNone("idle timeout after a quiet period")
    }

    /// Likewise for the write-stall clock: after a quiet period longer than
    /// write_stall_timeout, a client that pauses reading for a moment (well
    /// under the timeout) must not be closed as a slow consumer.
    func testWriteStallAfterAQuietPeriodSparesABrieflyBlockedClient() throws {
        let failures = Failures()
        runThreads(PollerKind.allCases.count) { p in
            let poller = PollerKind.allCases[p]
            do {
                let gateway = try startGateway(poller) {
                    // 3 s, not 1: the client must read again within it after its pause, and at load 24 a
                    // debug-build reader of 6 MB through a 4 KiB buffer once stalled for longer than 0.8 s.
                    $0.writeStallTimeout = 3
                    $0.tickMilliseconds = 10
                    $0.maxFrame = 1 << 20
                }
                usleep(3_300_000)  // nothing to send for longer than write_stall_timeout
                let client = try TestClient(port: gateway.port, timeoutSeconds: 5, receiveBuffer: 4096)
                let bigs = (0..<6).map { ownedFrame(owner: 8, seq: UInt32($0), bodySize: 1_000_000) }
                for big in bigs { try client.send(big) }  // more than the socket buffers hold
                usleep(200_000)  // reads nothing for a fifth of the allowed stall
                for (i, big) in bigs.enumerated() where client.receiveFrame() != big {
                    failures.add("\(poller): the echo of big frame \(i) was cut off; closes \(gateway.stats().closes)")
                    break
                }
                if gateway.stats().closes(.slowConsumer) != 0 { failures.add("\(poller): closed as a slow consumer") }
                client.close()
                gateway.stop()
            } catch {
                failures.add("\(poller): \(error)")
            }
        }
        failures.assertNone("write stall after a quiet period")
    }

    /// stop() while clients are sending: it returns, every reply the gateway
    /// produced reaches its client (in order, byte for byte) before the close.
    func testGracefulStopWithRequestsInFlight() throws {
        for poller in PollerKind.allCases {
            let gateway = try startGateway(poller)
            let clients = try (0..<5).map { _ in try TestClient(port: gateway.port, timeoutSeconds: 10) }
            let failures = Failures()
            let received = AtomicInt()
            let frame = { (c: Int, i: Int) in ownedFrame(owner: UInt32(c), seq: UInt32(i), bodySize: (i * 37) % 700) }
            var threads: [OSThread] = []
            for (c, client) in clients.enumerated() {
                threads.append(OSThread(name: "test-send-\(c)") {
                    // Sends until the gateway closes; while it lingers after the stop it reads and
                    // drops input, so a count would run out first on a quiet machine. stop() closes
                    // within drain_timeout + 1 s: 20 s bounds the loop, not the verdict.
                    let deadline = Date().addingTimeInterval(20)
                    var i = 0
                    while Date() < deadline {
                        guard (try? client.send(frame(c, i))) != nil else { return }  // the gateway closed
                        i += 1
                        if i % 20 == 0 { usleep(500) }
                    }
                    failures.add("\(poller) client \(c): never closed by stop()")
                })
                threads.append(OSThread(name: "test-recv-\(c)") {
                    var i = 0
                    while let reply = client.receiveFrame() {
                        if reply != frame(c, i) {
                            failures.add("\(poller) client \(c): reply \(i) differs")
                            return
                        }
                        i += 1
                    }
                    if !client.lastNilWasClose { failures.add("\(poller) client \(c): no close after \(i) replies (errno \(client.lastError))") }
                    received.add(i)
                })
            }
            XCTAssertTrue(waitUntil(seconds: 10) { gateway.stats().framesIn >= 500 }, "\(poller): traffic did not start")
            let g = UncheckedBox(gateway)
            XCTAssertTrue(finishes(within: 20) { g.value.stop() }, "\(poller): stop() did not return")
            for t in threads { t.join() }
            failures.assertNone("\(poller)")
            let s = gateway.stats()
            XCTAssertEqual(UInt64(received.load()), s.framesOut, "\(poller): replies produced vs received before the close")
            XCTAssertGreaterThanOrEqual(s.framesIn, 500)
            XCTAssertEqual(s.closes(.shutdown), 5, "\(poller): \(s.closes)")
            assertEveryCloseCounted(gateway, "\(poller)")
            gateway.stop()  // a second stop is harmless
        }
    }

    /// stop() while a client has sent more than the gateway will read and is
    /// slow to read its replies: every reply the gateway produced must still
    /// reach it (the gateway must not reset the connection over unread input
    /// while replies it already wrote are still queued in the socket).
    func testGracefulStopDeliversRepliesStillQueuedInTheSocket() throws {
        for poller in PollerKind.allCases {
            let gateway = try startGateway(poller) { $0.drainTimeout = 5 }
            let client = try TestClient(port: gateway.port, timeoutSeconds: 8)
            let frameSize = 1000
            let frame = { (i: Int) in ownedFrame(owner: 77, seq: UInt32(i), bodySize: frameSize - FrameHeader.size) }
            let stopping = AtomicInt()
            let received = AtomicInt()
            let failures = Failures()
            let sender = OSThread(name: "test-send") {
                for i in 0..<8_000 { guard (try? client.send(frame(i))) != nil else { return } }
            }
            let reader = OSThread(name: "test-recv") {
                // Reads nothing until stop() has begun, then everything.
                _ = spinUntil(seconds: 10) { stopping.load() == 1 }
                usleep(300_000)
                var i = 0
                while let reply = client.receiveFrame() {
                    if reply != frame(i) { return failures.add("reply \(i) differs") }
                    i += 1
                }
                if !client.lastNilWasClose { failures.add("no close after \(i) replies (errno \(client.lastError))") }
                received.store(i)
            }
            XCTAssertTrue(waitUntil(seconds: 10) { gateway.stats().framesIn >= 1000 }, "\(poller): traffic did not start")
            stopping.store(1)
            let g = UncheckedBox(gateway)
            XCTAssertTrue(finishes(within: 15) { g.value.stop() }, "\(poller): stop() did not return")
            reader.join()
            client.shutdownWrite()
            sender.join()
            failures.assertNone("\(poller)")
            let s = gateway.stats()
            XCTAssertEqual(s.closes(.shutdown), 1, "\(poller): closed gracefully, not forced: \(s.closes)")
            XCTAssertEqual(UInt64(received.load()), s.framesOut, "\(poller): replies received vs produced (\(s.framesIn) requests dealt)")
        }
    }

    func testStopWithIdleConnectionsReturns() throws {
        for poller in PollerKind.allCases {
            let gateway = try startGateway(poller) { $0.drainTimeout = 2 }
            let clients = try (0..<10).map { _ in try TestClient(port: gateway.port) }
            for (k, c) in clients.enumerated() { XCTAssertTrue(c.echoes(TestClient.frame(seq: UInt32(k), bodySize: k))) }
            let g = UncheckedBox(gateway)
            XCTAssertTrue(finishes(within: 10) { g.value.stop() }, "\(poller): stop() with idle connections did not return")
            for (k, c) in clients.enumerated() { XCTAssertTrue(c.isClosedByPeer(), "\(poller): client \(k) not closed by stop()") }
            XCTAssertEqual(gateway.stats().closes(.shutdown), 10, "\(poller): \(gateway.stats().closes)")
            assertEveryCloseCounted(gateway, "\(poller)")
            // Nothing listens any more.
            XCTAssertThrowsError(try TestClient(port: gateway.port), "\(poller): still accepting after stop()")
        }
    }

    /// A client that never reads while big replies wait for it: stop() forces
    /// the close at drain_timeout instead of waiting for it forever.
    func testStopIsBoundedByDrainTimeout() throws {
        for poller in PollerKind.allCases {
            let gateway = try startGateway(poller) {
                $0.drainTimeout = 1
                $0.maxFrame = 1 << 20
                $0.maxQueuedBytes = 32 << 20  // every frame is dealt: its reply waits on the socket
            }
            let stuck = try TestClient(port: gateway.port, receiveBuffer: 4096)
            let big = ownedFrame(owner: 3, seq: 1, bodySize: (1 << 20) - FrameHeader.size)
            for _ in 0..<8 { try stuck.send(big) }  // 8 MiB the gateway reads, but cannot write back
            XCTAssertTrue(waitUntil { gateway.stats().framesIn == 8 }, "\(poller): frames not received")
            let g = UncheckedBox(gateway)
            XCTAssertTrue(finishes(within: 10) { g.value.stop() }, "\(poller): stop() not bounded by drain_timeout")
            XCTAssertEqual(gateway.stats().closes(.shutdown), 1, "\(poller): \(gateway.stats().closes)")
            XCTAssertTrue(stuck.isClosedByPeer(), "\(poller)")
            assertEveryCloseCounted(gateway, "\(poller)")
        }
    }
}
