import Foundation
import Glibc
import XCTest
@_spi(Benchmarks) @testable import GatewayCore

/// Many clients at once, and slot reuse under connection churn, on both pollers.
final class LoadEndToEndTests: XCTestCase {
    /// 50 clients on 50 threads, each pipelining 50 frames of varied sizes
    /// (empty, small, a few bigger than a read block) twice, every reply
    /// checked byte for byte.
    func testManyConcurrentPipelinedClients() throws {
        for poller in PollerKind.allCases {
            try pipelinedClients(poller, "\(poller)") { $0.maxConnections = 64 }
        }
    }

    /// The same load under every hand-off policy: a strict pipeline (each stage
    /// on its own thread), everything carried inline by whichever thread woke
    /// first, and stages that spin before sleeping. Order, bytes and counts hold in each.
    func testEveryHandOffPolicyUnderLoad() throws {
        let policies: [(String, (inout GatewayConfig) -> Void)] = [
            ("strict pipeline", { $0.inlineBytes = 0 }),
            ("always inline", { $0.inlineBytes = 1 << 30 }),
            ("spinning stages", { $0.spinMicroseconds = 200 }),
        ]
        for (name, policy) in policies {
            try pipelinedClients(.epoll, name) {
                $0.maxConnections = 64
                policy(&$0)
            }
        }
    }

    private func pipelinedClients(_ poller: PollerKind, _ label: String,
                                  _ configure: (inout GatewayConfig) -> Void) throws {
        let gateway = try startGateway(poller, configure)
        let failures = Failures()
        let clients = 50
        let framesPerRound = 50
        let totalBytes = AtomicInt()
        runThreads(clients) { c in
            do {
                let client = try TestClient(port: gateway.port, timeoutSeconds: 10)
                var random = TestRandom(seed: UInt64(c) + 1000)
                for round in 0..<2 {
                    var request: [UInt8] = []
                    for i in 0..<framesPerRound {
                        let size: Int
                        switch random.below(20) {
                        case 0: size = 0
                        case 1: size = 70_000 + random.below(30_000)  // bigger than a read block
                        default: size = random.below(2_000)
                        }
                        request += ownedFrame(owner: UInt32(c), seq: UInt32(round * 1000 + i), bodySize: size,
                                              cmd: UInt16(1 + random.below(0xFEFE)))
                    }
                    guard let reply = client.exchange(request, expect: request.count, timeoutSeconds: 20) else {
                        failures.add("\(label) client \(c) round \(round): connection closed or timed out")
                        return
                    }
                    if reply != request { failures.add("\(label) client \(c) round \(round): reply differs from request") }
                    totalBytes.add(request.count)
                }
            } catch {
                failures.add("\(label) client \(c): \(error)")
            }
        }
        failures.assertNone("\(label)")
        gateway.stop()
        let s = gateway.stats()
        XCTAssertEqual(s.framesIn, UInt64(clients * framesPerRound * 2), "\(label)")
        XCTAssertEqual(s.framesOut, s.framesIn, "\(label)")
        XCTAssertEqual(s.bytesIn, UInt64(totalBytes.load()), "\(label)")
        XCTAssertEqual(s.bytesOut, s.bytesIn, "\(label)")
        XCTAssertEqual(s.accepted, UInt64(clients), "\(label)")
        assertEveryCloseCounted(gateway, "\(label)")
    }

    /// Thousands of short connections (echo then close, close with a reply in
    /// flight, reset, close mid-frame) on three threads while long-lived
    /// connections keep echoing frames that carry their own uid and body
    /// pattern: no reply may ever reach the wrong connection, and the table
    /// returns to the live connections afterwards.
    func testSlotReuseUnderChurn() throws {
        // Both pollers with the default hand-off budget, and a strict pipeline,
        // where every open, close and reclaim crosses the stage threads.
        let defaultBudget = GatewayConfig().inlineBytes
        for (poller, inlineBytes) in [(PollerKind.epoll, defaultBudget), (.poll, defaultBudget), (.epoll, 0)] {
            let label = "\(poller) inline_bytes \(inlineBytes)"
            // 1,504 connections through 1,024 slots: reused, with headroom for the grace period before
            // a closed slot comes back, which a loaded machine stretches (its thread runs last).
            let gateway = try startGateway(poller) {
                $0.maxConnections = 1024
                $0.inlineBytes = inlineBytes
            }
            let failures = Failures()
            let churnDone = AtomicInt()
            let longLived = 4
            let cyclesPerThread = 500
            let longEchoes = AtomicInt()
            let churnEchoes = AtomicInt()
            let longClients = try (0..<longLived).map { _ in try TestClient(port: gateway.port) }
            runThreads(3 + longLived) { t in
                if t >= 3 {
                    // A long-lived connection: owner ids 1...4.
                    let owner = UInt32(t - 2)
                    let client = longClients[t - 3]
                    var seq: UInt32 = 0
                    while churnDone.load() < 3 && seq < 100_000 {
                        seq += 1
                        let f = ownedFrame(owner: owner, seq: seq, bodySize: Int(seq % 300))
                        guard (try? client.send(f)) != nil, let reply = client.receiveFrame() else {
                            failures.add("\(label) long-lived \(owner) seq \(seq): connection lost")
                            return
                        }
                        if reply != f {
                            failures.add("\(label) long-lived \(owner) seq \(seq): got uid \(Self.uid(reply)) seq \(Self.seq(reply))")
                            return
                        }
                        longEchoes.add()
                    }
                    return
                }
                defer { churnDone.add() }
                for cycle in 0..<cyclesPerThread {
                    let owner = 0x8000_0000 | UInt32(t << 20) | UInt32(cycle)
                    guard let client = try? TestClient(port: gateway.port) else {
                        failures.add("\(label) churn \(t).\(cycle): connect failed")
                        return
                    }
                    let f = ownedFrame(owner: owner, seq: UInt32(cycle), bodySize: cycle % 200)
                    switch cycle % 4 {
                    case 0:  // echo, then close
                        guard client.echoes(f) else { failures.add("\(label) churn \(t).\(cycle): wrong or no echo"); return }
                        churnEchoes.add()
                    case 1:  // close with the reply in flight
                        try? client.send(f)
                    case 2:  // echo twice, then reset
                        guard client.echoes(f), client.echoes(ownedFrame(owner: owner, seq: 1, bodySize: 5)) else {
                            failures.add("\(label) churn \(t).\(cycle): wrong or no echo before reset")
                            return
                        }
                        churnEchoes.add()
                        client.resetOnClose()
                    default:  // close mid-frame
                        try? client.send(Array(f.prefix(FrameHeader.size / 2 + cycle % 10)))
                    }
                    client.close()
                }
            }
            failures.assertNone("\(label)")
            XCTAssertGreaterThan(longEchoes.load(), 0, "\(label)")
            XCTAssertEqual(churnEchoes.load(), 3 * cyclesPerThread / 2, "\(label)")
            let s = gateway.stats()
            XCTAssertGreaterThan(s.accepted, 1024, "\(label): more connections than slots, so slots were reused")
            XCTAssertEqual(s.closes(.overCapacity), 0, "\(label)")
            // Every churned slot comes back once its grace period has passed; the long-lived ones stay.
            XCTAssertTrue(waitUntil(seconds: 5) { gateway.stats().connectionsOpen == longLived },
                          "\(label): \(gateway.stats().connectionsOpen) slots held, \(longLived) connections live; accepted \(gateway.stats().accepted), closes \(gateway.stats().closes)")
            for (k, client) in longClients.enumerated() {
                XCTAssertTrue(client.echoes(ownedFrame(owner: UInt32(k + 1), seq: 0xFFFF, bodySize: 33)), "\(label): long-lived \(k + 1) after churn")
                client.close()
            }
            XCTAssertTrue(waitUntil(seconds: 5) { gateway.stats().connectionsOpen == 0 }, "\(label)")
            gateway.stop()
            assertEveryCloseCounted(gateway, "\(label)")
        }
    }

    /// Churn through a table of only 8 slots, so each slot is reused hundreds
    /// of times while stale ids of its earlier connections may still sit in
    /// the stages' inboxes. Clients that find the table full are closed at once
    /// (counted as over capacity); everything else must echo correctly.
    func testSlotReuseWithFewSlots() throws {
        for poller in PollerKind.allCases {
            let gateway = try startGateway(poller) { $0.maxConnections = 8 }
            let failures = Failures()
            let rejected = AtomicInt()
            let served = AtomicInt()
            let churnDone = AtomicInt()
            let longClients = try (0..<2).map { _ in try TestClient(port: gateway.port) }
            runThreads(5) { t in
                if t >= 3 {
                    let client = longClients[t - 3]
                    var seq: UInt32 = 0
                    while churnDone.load() < 3 && seq < 100_000 {
                        seq += 1
                        let f = ownedFrame(owner: UInt32(t), seq: seq, bodySize: Int(seq % 64))
                        if !client.echoes(f) { return failures.add("\(poller) long-lived \(t): lost at seq \(seq)") }
                    }
                    return
                }
                defer { churnDone.add() }
                var retries = 0
                var cycle = 0
                while cycle < 200 {
                    let owner = 0x4000_0000 | UInt32(t << 16) | UInt32(cycle)
                    guard let client = try? TestClient(port: gateway.port) else { return failures.add("\(poller): connect failed") }
                    let f = ownedFrame(owner: owner, seq: UInt32(cycle), bodySize: cycle % 50)
                    guard (try? client.send(f)) != nil, let reply = client.receiveFrame() else {
                        guard client.lastNilWasClose else { return failures.add("\(poller) churn \(t).\(cycle): timed out") }
                        // The table was full (slots return after a grace period): back off, try again.
                        rejected.add()
                        retries += 1
                        if retries > 3000 { return failures.add("\(poller) churn \(t): no free slot for too long") }
                        usleep(1_000)
                        continue
                    }
                    cycle += 1
                    if reply != f { return failures.add("\(poller) churn \(t).\(cycle): got uid \(Self.uid(reply)) seq \(Self.seq(reply))") }
                    served.add()
                    if cycle % 2 == 1 { client.resetOnClose() }
                    client.close()
                }
            }
            failures.assertNone("\(poller)")
            XCTAssertEqual(served.load(), 600, "\(poller): rejected \(rejected.load())")
            XCTAssertGreaterThan(gateway.stats().accepted, 600, "\(poller): 8 slots served every connection")
            XCTAssertTrue(waitUntil { gateway.stats().closes(.overCapacity) == UInt64(rejected.load()) },
                          "\(poller): \(rejected.load()) clients closed without a reply, \(gateway.stats().closes(.overCapacity)) over capacity")
            XCTAssertTrue(waitUntil { gateway.stats().connectionsOpen == 2 }, "\(poller): \(gateway.stats().connectionsOpen) slots held")
            for (k, c) in longClients.enumerated() { XCTAssertTrue(c.echoes(TestClient.frame(seq: 1, bodySize: 1)), "\(poller) long-lived \(k)") }
            gateway.stop()
            assertEveryCloseCounted(gateway, "\(poller)")
        }
    }

    static func uid(_ frame: [UInt8]) -> UInt32 { frame.withUnsafeBytes { FrameHeader(decoding: $0.baseAddress!).uid } }
    static func seq(_ frame: [UInt8]) -> UInt32 { frame.withUnsafeBytes { FrameHeader(decoding: $0.baseAddress!).seq } }
}
