import Foundation
import Glibc
import XCTest
@_spi(Benchmarks) @testable import GatewayCore

/// Ring storage from the pool (Memory/RingPool.swift): taken by a ring's producer on its first
/// push, given back when the ring is empty or its slot is reclaimed; an idle connection holds none.
final class RingPoolTests: XCTestCase {
    /// A descriptor that carries `n` (no real chunk behind it; the ring never dereferences one).
    static func item(_ n: UInt32) -> FrameDescriptor {
        FrameDescriptor(chunk: Chunk(UnsafeMutableRawPointer(bitPattern: 0x1000)!), offset: n, length: ~n)
    }

    func testStorageTakenOnFirstPushAndGivenBackWhenEmpty() {
        let table = ConnectionTable(capacity: 4, ringCapacity: 8)
        let ring = table.receiveRing(1)
        XCTAssertFalse(ring.holdsStorage, "a fresh slot's ring holds no storage")
        XCTAssertEqual(table.rings.inUse, 0)
        XCTAssertEqual(ring.freeCount, 8, "an empty ring without storage has all its room")
        ring.detachIfEmpty()
        XCTAssertEqual(table.rings.inUse, 0)

        XCTAssertTrue(ring.push(Self.item(1)))
        XCTAssertTrue(ring.holdsStorage)
        XCTAssertEqual(table.rings.inUse, 1)
        XCTAssertTrue(ring.push(Self.item(2)))
        XCTAssertEqual(table.rings.inUse, 1, "one ring takes storage once")
        XCTAssertEqual(ring.peek(0).pointee.offset, 1)
        ring.pop(1)
        ring.detachIfEmpty()
        XCTAssertTrue(ring.holdsStorage, "an entry still waits: the storage stays")
        XCTAssertEqual(ring.peek(0).pointee.offset, 2)
        ring.pop(1)
        ring.detachIfEmpty()
        XCTAssertFalse(ring.holdsStorage)
        XCTAssertEqual(table.rings.inUse, 0)

        // Fill to capacity after a detach: order kept, a full ring refuses.
        for i in 0..<8 { XCTAssertTrue(ring.push(Self.item(UInt32(10 + i)))) }
        XCTAssertFalse(ring.push(Self.item(99)))
        for i in 0..<8 { XCTAssertEqual(ring.peek(i).pointee.offset, UInt32(10 + i)) }

        // Both rings of every slot at once: the pool holds exactly two per slot.
        for i in 0..<UInt32(4) {
            for other in [table.receiveRing(i), table.sendRing(i)] where !other.holdsStorage {
                XCTAssertTrue(other.push(Self.item(i)))
            }
        }
        XCTAssertEqual(table.rings.inUse, 8)
        XCTAssertEqual(table.receiveRing(1).peek(7).pointee.offset, 17, "no two rings share storage")
        XCTAssertEqual(table.sendRing(1).peek(0).pointee.offset, 1)

        // A reclaimed slot's reset gives back what its rings held, entries or not.
        for i in 0..<UInt32(4) {
            table.receiveRing(i).reset()
            table.sendRing(i).reset()
        }
        XCTAssertEqual(table.rings.inUse, 0)
        XCTAssertEqual(table.receiveRing(1).count, 0)
        XCTAssertLessThanOrEqual(table.rings.touchedBytes, 8 * 8 * MemoryLayout<FrameDescriptor>.stride)
    }

    /// Storage given back is taken again by whichever ring needs it next: the last storage given
    /// back is the first taken (warm in cache), and a slot's record alone stays within 512 bytes.
    /// A slot's two rings in an array, as Engine.reclaim walks them: the walk ends after two. With
    /// the pool held as `unowned(unsafe) RingPool?` the unoptimized build never ended it.
    func testAnArrayOfRingsEndsAfterItsLast() {
        let table = ConnectionTable(capacity: 2, ringCapacity: 8)
        var walked = 0
        for ring in [table.receiveRing(1), table.sendRing(1)] {
            XCTAssertFalse(ring.holdsStorage)
            walked += 1
            if walked > 2 { break }
        }
        XCTAssertEqual(walked, 2)
    }

    /// Pages whose storage is all free go back to the kernel; storage still resident is taken first.
    func testTrimGivesPagesOfFreeStorageBack() {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let pool = RingPool(rings: 64, ringCapacity: 32)  // 512 B a ring
        let perPage = page / 512
        let storage = (0..<64).map { _ in pool.take() }
        for s in storage { s.initialize(to: Self.item(7)) }
        XCTAssertEqual(pool.trim(force: true), 0, "nothing free")
        // One ring of the first page stays in use; every other ring's storage is put back.
        for s in storage.dropFirst() { pool.put(s) }
        XCTAssertEqual(pool.trim(force: true), (64 / perPage - 1) * page, "every page but the first")
        XCTAssertEqual(pool.trim(force: true), 0, "given back already")
        XCTAssertEqual(storage[0].pointee.offset, 7, "the ring in use kept its entry")
        // The first page's free rings come first, then the pages given back, found zeroed.
        let firstPage = UnsafeMutableRawPointer(storage[0])
        for _ in 1..<perPage {
            let s = pool.take()
            XCTAssertTrue(UnsafeMutableRawPointer(s) >= firstPage && UnsafeMutableRawPointer(s) < firstPage + page)
        }
        let fresh = pool.take()
        XCTAssertEqual(UnsafeRawPointer(fresh).load(as: UInt64.self), 0, "a page given back reads as zeros")
        XCTAssertEqual(pool.inUse, perPage + 1)
        XCTAssertEqual(pool.trim(force: true), 0, "no page is all free")
    }

    func testStorageReusedAcrossRings() {
        let table = ConnectionTable(capacity: 2, ringCapacity: 32)
        XCTAssertLessThanOrEqual(table.bytesPerSlot, 512, "an idle connection's slot")
        let a = table.receiveRing(0), b = table.sendRing(1)
        XCTAssertTrue(a.push(Self.item(1)))
        let storage = a.peek(0)
        a.pop(1)
        a.detachIfEmpty()
        XCTAssertTrue(b.push(Self.item(2)))
        XCTAssertEqual(b.peek(0), storage)
        XCTAssertEqual(b.peek(0).pointee.offset, 2)
        XCTAssertEqual(table.rings.touchedBytes, 32 * MemoryLayout<FrameDescriptor>.stride)
    }

    /// Two producer/consumer pairs on two slots of one table, each producer giving its storage back
    /// whenever it finds the ring empty, so storage moves between the rings while both are in use.
    /// Every item arrives once and in order (a consumer reading storage already handed to the other
    /// ring would see the other pair's items). Under ThreadSanitizer this checks the orderings.
    func testDetachingProducersAcrossThreads() {
        let table = ConnectionTable(capacity: 2, ringCapacity: 4)
        let itemsPerPair: UInt32 = 200_000
        let failures = Failures()
        runThreads(4) { t in
            let pair = UInt32(t / 2)
            let ring = table.receiveRing(pair)
            let tag = pair << 28
            if t % 2 == 0 {
                var next: UInt32 = 0
                while next < itemsPerPair {
                    var pushed = 0
                    while pushed < 3, next < itemsPerPair, ring.push(Self.item(tag | next)) {
                        next += 1
                        pushed += 1
                    }
                    ring.detachIfEmpty()
                    if pushed == 0 { sched_yield() }
                }
            } else {
                var expected: UInt32 = 0
                while expected < itemsPerPair {
                    let n = ring.count
                    if n == 0 {
                        sched_yield()
                        continue
                    }
                    for i in 0..<n {
                        let got = ring.peek(i).pointee.offset
                        if got != tag | expected {
                            failures.add("pair \(pair): item \(expected) read as \(got)")
                            return
                        }
                        expected += 1
                    }
                    ring.pop(n)
                }
            }
        }
        failures.assertNone("detaching producers")
        for pair in 0..<UInt32(2) { table.receiveRing(pair).detachIfEmpty() }
        XCTAssertEqual(table.rings.inUse, 0)
    }

    /// Through the gateway: idle connections take no storage; a frame held by a handler holds its
    /// receive ring; every ring is given back once the connections are reclaimed.
    func testIdleConnectionsHoldNoRings() throws {
        for poller in PollerKind.allCases {
            let handler = HoldingHandler()
            let gateway = try startGateway(poller, handler: handler)
            defer { gateway.stop() }
            let idle = try (0..<20).map { _ in try TestClient(port: gateway.port) }
            XCTAssertTrue(waitUntil { gateway.stats().connectionsOpen == idle.count }, "\(poller)")
            // Part of a frame: held by the assembly (in a chunk of its own), nothing on a ring.
            try idle[0].send(Array(ownedFrame(owner: 1, seq: 1, bodySize: 40).prefix(30)))
            XCTAssertTrue(waitUntil { gateway.stats().pendingBytes > 0 }, "\(poller)")
            XCTAssertEqual(gateway.stats().ringsHeld, 0, "\(poller): idle connections hold no ring storage")

            let busy = try TestClient(port: gateway.port)
            let f = ownedFrame(owner: 2, seq: 1, bodySize: 100)
            handler.hold.store(1)
            try busy.send(f)
            XCTAssertTrue(waitUntil { handler.holding.load() == 1 }, "\(poller)")
            // The frame is on the receive ring until the handler returns and Deal pops it.
            XCTAssertEqual(gateway.stats().ringsHeld, 1, "\(poller): the receive ring took storage")
            handler.hold.store(0)
            XCTAssertEqual(busy.receiveFrame(), f, "\(poller)")
            XCTAssertTrue(busy.echoes(ownedFrame(owner: 2, seq: 2, bodySize: 3)), "\(poller)")
            XCTAssertLessThanOrEqual(gateway.stats().ringsHeld, 2, "\(poller)")

            busy.close()
            for client in idle { client.close() }
            XCTAssertTrue(waitUntil { gateway.stats().connectionsOpen == 0 }, "\(poller)")
            XCTAssertEqual(gateway.stats().ringsHeld, 0, "\(poller): reclaimed slots gave their rings back")
        }
    }

    /// Slot reuse under churn through a table of 16 slots: pipelined echoes, closes with replies in
    /// flight and mid-frame, every reply checked; the pool never holds more than two rings a slot and
    /// holds none once every connection is reclaimed.
    func testRingsReturnedUnderChurn() throws {
        for poller in PollerKind.allCases {
            let gateway = try startGateway(poller) { $0.maxConnections = 16 }
            let failures = Failures()
            let echoes = AtomicInt()
            runThreads(4) { t in
                for cycle in 0..<150 {
                    guard let client = try? TestClient(port: gateway.port) else { continue }
                    let frames = (0..<(1 + cycle % 5)).map {
                        ownedFrame(owner: UInt32(t << 16 | cycle), seq: UInt32($0), bodySize: (cycle * 37 + $0) % 700)
                    }
                    switch cycle % 3 {
                    case 0:
                        // Nil only when the table was full (closed at once, counted as over capacity).
                        let sent = frames.flatMap { $0 }
                        if let reply = client.exchange(sent, expect: sent.count) {
                            if reply != sent { failures.add("\(poller) \(t).\(cycle): replies differ") }
                            echoes.add()
                        }
                    case 1:
                        try? client.send(frames.flatMap { $0 })
                    default:
                        try? client.send(Array(frames[0].prefix(7)))
                    }
                    client.close()
                    if gateway.stats().ringsHeld > 32 { failures.add("\(poller): more than two rings a slot") }
                }
            }
            failures.assertNone("\(poller)")
            XCTAssertGreaterThan(echoes.load(), 0, "\(poller)")
            XCTAssertGreaterThan(gateway.stats().accepted, 16, "\(poller): slots were reused")
            XCTAssertTrue(waitUntil { gateway.stats().connectionsOpen == 0 }, "\(poller)")
            XCTAssertEqual(gateway.stats().ringsHeld, 0, "\(poller)")
            gateway.stop()
        }
    }
}

/// Echoes, but while `hold` is 1 it keeps Deal inside `received` (counted in `holding`).
private final class HoldingHandler: GatewayHandler, @unchecked Sendable {  // state in atomics
    let hold = AtomicInt()
    let holding = AtomicInt()

    func received(_ frame: Frame, on connection: Connection) {
        if hold.load() == 1 {
            holding.store(1)
            // Bounded: the test releases it at once; a stuck test ends after 10 s.
            for _ in 0..<10_000 where hold.load() == 1 { usleep(1000) }
            holding.store(0)
        }
        connection.forward(frame)
    }
}
