import Glibc
import XCTest
@_spi(Benchmarks) @testable import GatewayCore

/// ChunkPool (size classes, reuse, reference counts, huge chunks) and FrameRing
/// (the SPSC descriptor ring).
final class ChunkPoolTests: XCTestCase {
    private func refcount(_ c: Chunk) -> Int32 { c.base.load(as: Int32.self) }

    func testSizeClasses() {
        let pool = ChunkPool()
        let cases: [(ask: Int, capacity: Int, sizeClass: UInt8)] = [
            (0, 256, 0), (1, 256, 0), (256, 256, 0), (257, 1024, 1), (1024, 1024, 1), (1025, 4096, 2),
            (16 << 10, 16 << 10, 3), ((16 << 10) + 1, 64 << 10, 4), (ChunkPool.blockCapacity, 64 << 10, 4),
        ]
        for c in cases {
            let chunk = pool.allocate(capacity: c.ask)
            XCTAssertEqual(chunk.capacity, c.capacity, "asked \(c.ask)")
            XCTAssertEqual(chunk.sizeClass, c.sizeClass, "asked \(c.ask)")
            XCTAssertEqual(refcount(chunk), 1)
            // The whole capacity is usable.
            chunk.bytes.initializeMemory(as: UInt8.self, repeating: 0xC3, count: chunk.capacity)
            pool.release(chunk)
        }
        XCTAssertEqual(ChunkPool.classCapacities.last, ChunkPool.blockCapacity)
    }

    func testReuseWithinAClassOnly() {
        let pool = ChunkPool()
        let a = pool.allocate(capacity: 100)
        let b = pool.allocate(capacity: 100)
        XCTAssertNotEqual(a, b)
        pool.release(a)
        pool.release(b)
        // Last released, first reused; the header is fresh.
        let c = pool.allocate(capacity: 200)
        XCTAssertEqual(c, b)
        XCTAssertEqual(refcount(c), 1)
        XCTAssertEqual(c.capacity, 256)
        let d = pool.allocate(capacity: 1)
        XCTAssertEqual(d, a)
        // Another class does not see them.
        let e = pool.allocate(capacity: 2000)
        XCTAssertNotEqual(e, a)
        XCTAssertNotEqual(e, b)
        let f = pool.allocate(capacity: 100)
        XCTAssertNotEqual(f, a, "a chunk in use is never handed out twice")
        XCTAssertNotEqual(f, b)
        for x in [c, d, e, f] { pool.release(x) }
    }

    func testReleaseRecyclesOnlyOnLastReference() {
        let pool = ChunkPool()
        let a = pool.allocate(capacity: 1000)
        a.retain()
        a.retain()
        XCTAssertEqual(refcount(a), 3)
        pool.release(a)
        pool.release(a)
        XCTAssertEqual(refcount(a), 1)
        let other = pool.allocate(capacity: 1000)
        XCTAssertNotEqual(other, a, "still referenced: not recycled")
        pool.release(a)
        let again = pool.allocate(capacity: 1000)
        XCTAssertEqual(again, a, "last reference dropped: recycled")
        XCTAssertEqual(refcount(again), 1, "reuse resets the count")
        pool.release(again)
        pool.release(other)
    }

    func testHugeChunks() {
        let pool = ChunkPool()
        for size in [ChunkPool.blockCapacity + 1, 200_000, 1 << 20] {
            let c = pool.allocate(capacity: size)
            XCTAssertEqual(c.capacity, size)
            XCTAssertEqual(c.sizeClass, 0xFF)
            c.bytes.initializeMemory(as: UInt8.self, repeating: 0x11, count: size)
            c.retain()
            pool.release(c)
            XCTAssertEqual(refcount(c), 1)
            XCTAssertEqual(c.bytes.load(fromByteOffset: size - 1, as: UInt8.self), 0x11)
            pool.release(c)  // back to malloc
        }
        // Huge chunks never end up in a class list.
        let small = pool.allocate(capacity: ChunkPool.blockCapacity)
        XCTAssertEqual(small.capacity, ChunkPool.blockCapacity)
        XCTAssertEqual(small.sizeClass, 4)
        pool.release(small)
    }

    func testKeepsABoundedNumberPerClass() {
        let pool = ChunkPool(retainedBytes: 0)  // keeps the minimum, 16 per class
        let chunks = (0..<40).map { _ in pool.allocate(capacity: 50) }
        for c in chunks { c.bytes.storeBytes(of: 0, as: UInt8.self) }
        for c in chunks { pool.release(c) }
        // The pool hands back what it kept, each at most once.
        let again = (0..<40).map { _ in pool.allocate(capacity: 50) }
        XCTAssertEqual(Set(again.map(\.base)).count, 40)
        for c in again { pool.release(c) }
    }

    func testConcurrentAllocateReleaseNeverSharesAChunk() {
        let pool = ChunkPool()
        let corrupt = AtomicInt()
        runThreads(3) { t in
            var random = TestRandom(seed: UInt64(t + 1))
            var held: [(Chunk, UInt8)] = []
            for i in 0..<20_000 {
                if held.count < 8 && (held.isEmpty || random.below(2) == 0) {
                    let c = pool.allocate(capacity: 1 + random.below(3000))
                    let mark = UInt8(truncatingIfNeeded: t * 64 + i)
                    c.bytes.initializeMemory(as: UInt8.self, repeating: mark, count: 64)
                    held.append((c, mark))
                } else {
                    let (c, mark) = held.removeLast()
                    for j in 0..<64 where c.bytes.load(fromByteOffset: j, as: UInt8.self) != mark {
                        corrupt.add()
                        break
                    }
                    if i % 3 == 0 {
                        c.retain()  // an extra reference dropped from here: still one recycle
                        pool.release(c)
                    }
                    pool.release(c)
                }
            }
            for (c, _) in held { pool.release(c) }
        }
        XCTAssertEqual(corrupt.load(), 0, "a chunk was handed to two owners at once")
    }
}

final class FrameRingTests: XCTestCase {
    /// Storage for one ring, outside any connection table.
    final class RingBox {
        let indices = UnsafeMutablePointer<FrameRing.Indices>.allocate(capacity: 1)
        let storage: UnsafeMutablePointer<FrameDescriptor>
        let ring: FrameRing
        let capacity: Int

        init(capacity: Int, start: UInt32 = 0) {
            self.capacity = capacity
            indices.initialize(to: FrameRing.Indices(head: .init(start), tail: .init(start)))
            storage = .allocate(capacity: capacity)
            ring = FrameRing(indices: indices, storage: storage, capacity: capacity)
        }

        deinit {
            indices.deallocate()
            storage.deallocate()
        }
    }

    /// A descriptor that carries `n` (no real chunk behind it; the ring never dereferences one).
    static func item(_ n: UInt32) -> FrameDescriptor {
        FrameDescriptor(chunk: Chunk(UnsafeMutableRawPointer(bitPattern: 0x1000)!), offset: n, length: ~n)
    }

    func testCapacityFullAndEmpty() {
        let box = RingBox(capacity: 8)
        let ring = box.ring
        XCTAssertEqual(ring.count, 0)
        XCTAssertEqual(ring.freeCount, 8)
        XCTAssertTrue(ring.isEmptySeqCst)
        for i in 0..<8 {
            XCTAssertTrue(ring.push(Self.item(UInt32(i))), "push \(i)")
            XCTAssertEqual(ring.count, i + 1)
            XCTAssertEqual(ring.freeCount, 7 - i)
        }
        XCTAssertFalse(ring.push(Self.item(99)), "full")
        XCTAssertEqual(ring.count, 8)
        XCTAssertFalse(ring.isEmptySeqCst)
        for i in 0..<8 {
            XCTAssertEqual(ring.peek(i).pointee.offset, UInt32(i))
        }
        ring.pop(3)
        XCTAssertEqual(ring.count, 5)
        XCTAssertEqual(ring.freeCount, 3)
        XCTAssertEqual(ring.peek(0).pointee.offset, 3)
        XCTAssertTrue(ring.push(Self.item(8)))
        XCTAssertEqual(ring.peek(5).pointee.offset, 8)
        ring.pop(6)
        XCTAssertEqual(ring.count, 0)
        XCTAssertTrue(ring.isEmptySeqCst)
        ring.reset()
        XCTAssertEqual(ring.count, 0)
        XCTAssertEqual(ring.freeCount, 8)
    }

    func testWraparoundKeepsOrder() {
        // Also across the 32-bit wrap of the free-running positions.
        for start: UInt32 in [0, UInt32.max - 20] {
            let box = RingBox(capacity: 4, start: start)
            let ring = box.ring
            var next: UInt32 = 0
            var expected: UInt32 = 0
            var random = TestRandom(seed: UInt64(start) + 1)
            for _ in 0..<2000 {
                let pushes = random.below(5)
                for _ in 0..<pushes where ring.freeCount > 0 {
                    XCTAssertTrue(ring.push(Self.item(next)))
                    next &+= 1
                }
                XCTAssertLessThanOrEqual(ring.count, 4)
                XCTAssertEqual(ring.count + ring.freeCount, 4)
                let pops = random.below(ring.count + 1)
                for i in 0..<pops {
                    XCTAssertEqual(ring.peek(i).pointee.offset, expected &+ UInt32(i))
                    XCTAssertEqual(ring.peek(i).pointee.length, ~(expected &+ UInt32(i)))
                }
                ring.pop(pops)
                expected &+= UInt32(pops)
            }
            XCTAssertEqual(expected &+ UInt32(ring.count), next, "start \(start)")
        }
    }

    /// A hang guard only: a thread fails when it has waited 20 s straight without progress (the ring
    /// full, or empty, all that time). A loaded machine may take far longer than 20 s in all.
    private static func stalled(at progress: UInt32, _ seen: inout UInt32, _ since: inout Date) -> Bool {
        if progress != seen { seen = progress; since = Date(); return false }
        return Date().timeIntervalSince(since) > 20
    }

    func testTwoThreadStressOrderAndNoLoss() {
        let box = RingBox(capacity: 32)
        let ring = box.ring
        let total: UInt32 = 200_000
        let errors = AtomicInt()
        let received = AtomicInt()
        runThreads(2) { role in
            var seen = UInt32.max, since = Date()
            if role == 0 {
                var n: UInt32 = 0
                var spins = 0
                while n < total {
                    if ring.push(Self.item(n)) {
                        n += 1
                    } else {
                        spins += 1
                        if spins & 63 == 0 {
                            sched_yield()
                            if Self.stalled(at: n, &seen, &since) { errors.add(1_000_000); return }
                        }
                    }
                }
            } else {
                var expected: UInt32 = 0
                var spins = 0
                while expected < total {
                    let n = ring.count
                    if n == 0 {
                        spins += 1
                        if spins & 63 == 0 {
                            sched_yield()
                            if Self.stalled(at: expected, &seen, &since) { errors.add(1_000_000); return }
                        }
                        continue
                    }
                    let take = min(n, 1 + Int(expected % 7))
                    for i in 0..<take {
                        let d = ring.peek(i).pointee
                        if d.offset != expected || d.length != ~expected { errors.add() }
                        expected += 1
                    }
                    ring.pop(take)
                }
                received.store(Int(expected))
            }
        }
        XCTAssertEqual(errors.load(), 0)
        XCTAssertEqual(received.load(), Int(total))
        XCTAssertEqual(ring.count, 0)
    }
}
