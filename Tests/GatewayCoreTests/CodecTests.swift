import XCTest
@_spi(Benchmarks) @testable import GatewayCore

/// The frame codec: header layout, FrameCutter's scan, and FrameAssembly fed
/// the same byte stream cut in every way a socket could cut it.
final class CodecTests: XCTestCase {
    // MARK: FrameHeader

    func testHeaderEncodesBigEndianPackedAndDecodesBack() {
        let header = FrameHeader(length: 0x0102_0304, seq: 0x0506_0708, cmd: 0x090A, status: 0x0B0C_0D0E, uid: 0x0F10_1112)
        var bytes = [UInt8](repeating: 0xAA, count: FrameHeader.size + 2)
        bytes.withUnsafeMutableBytes { header.encode(into: $0.baseAddress!) }
        XCTAssertEqual(Array(bytes[0..<18]), (1...18).map { UInt8($0) }, "fields in order, big-endian, no padding")
        XCTAssertEqual(Array(bytes[18...]), [0xAA, 0xAA], "encode writes exactly 18 bytes")
        bytes.withUnsafeBytes {
            XCTAssertEqual(FrameHeader(decoding: $0.baseAddress!), header)
            XCTAssertEqual(FrameHeader.length(at: $0.baseAddress!), 0x0102_0304)
        }
        // Unaligned positions and extreme values.
        var random = TestRandom(seed: 1)
        var buffer = [UInt8](repeating: 0, count: 64)
        for _ in 0..<500 {
            let h = FrameHeader(length: UInt32(truncatingIfNeeded: random.next()), seq: UInt32(truncatingIfNeeded: random.next()),
                                cmd: UInt16(truncatingIfNeeded: random.next()), status: UInt32(truncatingIfNeeded: random.next()),
                                uid: UInt32(truncatingIfNeeded: random.next()))
            let at = random.below(40)
            buffer.withUnsafeMutableBytes {
                h.encode(into: $0.baseAddress! + at)
                XCTAssertEqual(FrameHeader(decoding: $0.baseAddress! + at), h)
            }
        }
        XCTAssertEqual(ReservedCommand.heartbeat, 0xFF01)
        XCTAssertTrue(ReservedCommand.range.contains(0xFF00) && ReservedCommand.range.contains(0xFFFF))
        XCTAssertFalse(ReservedCommand.range.contains(0xFEFF))
    }

    // MARK: FrameCutter

    private func scan(_ bytes: [UInt8], maxFrame: Int) -> FrameCutter.Scan {
        bytes.withUnsafeBytes { FrameCutter.scan($0.baseAddress ?? UnsafeRawPointer(bitPattern: 8)!, $0.count, maxFrame: maxFrame) }
    }

    /// A frame of exactly `length` bytes (length >= 18).
    private func frame(length: Int, seq: UInt32 = 1) -> [UInt8] {
        TestClient.frame(seq: seq, bodySize: length - FrameHeader.size)
    }

    func testScanAtEveryBoundaryLength() {
        let maxFrame = 1000
        XCTAssertEqual(scan(TestClient.rawHeader(length: 17), maxFrame: maxFrame), .badLength(17, offset: 0, count: 0))
        XCTAssertEqual(scan(TestClient.rawHeader(length: 0), maxFrame: maxFrame), .badLength(0, offset: 0, count: 0))
        XCTAssertEqual(scan(TestClient.rawHeader(length: 0xFFFF_FFFF), maxFrame: maxFrame), .badLength(0xFFFF_FFFF, offset: 0, count: 0))
        XCTAssertEqual(scan(TestClient.rawHeader(length: UInt32(maxFrame + 1)), maxFrame: maxFrame),
                       .badLength(UInt32(maxFrame + 1), offset: 0, count: 0))
        // The length alone decides: 4 bytes of a bad length are enough to reject.
        XCTAssertEqual(scan(TestClient.rawHeader(length: 17, extra: 0), maxFrame: maxFrame), .badLength(17, offset: 0, count: 0))

        for length in [18, 19, 100, maxFrame] {
            let f = frame(length: length)
            XCTAssertEqual(scan(f, maxFrame: maxFrame), .frames(consumed: length, count: 1), "length \(length)")
            XCTAssertEqual(scan(Array(f.dropLast()), maxFrame: maxFrame), .frames(consumed: 0, count: 0), "length \(length) minus one byte")
            XCTAssertEqual(scan(f + [0, 0, 0], maxFrame: maxFrame), .frames(consumed: length, count: 1), "a 3-byte tail is not judged")
        }
        // The default limit, 1 MiB, is itself valid; one more is not.
        XCTAssertEqual(scan(TestClient.rawHeader(length: 1 << 20), maxFrame: 1 << 20), .frames(consumed: 0, count: 0))
        XCTAssertEqual(scan(TestClient.rawHeader(length: (1 << 20) + 1), maxFrame: 1 << 20), .badLength((1 << 20) + 1, offset: 0, count: 0))
    }

    func testScanPartialHeaderIsNeverJudged() {
        // Fewer than 4 bytes: no length yet, whatever they are.
        for n in 0..<4 {
            XCTAssertEqual(scan([UInt8](repeating: 0xFF, count: n), maxFrame: 100), .frames(consumed: 0, count: 0), "\(n) bytes of 0xFF")
            XCTAssertEqual(scan([UInt8](repeating: 0, count: n), maxFrame: 100), .frames(consumed: 0, count: 0), "\(n) zero bytes")
        }
        // 4...17 bytes of a valid header: incomplete.
        let f = frame(length: 40)
        for n in 4..<18 {
            XCTAssertEqual(scan(Array(f[0..<n]), maxFrame: 100), .frames(consumed: 0, count: 0), "\(n) header bytes")
        }
    }

    func testScanCoalescedFramesAndBadLengthAfterThem() {
        var stream: [UInt8] = []
        var ends: [Int] = []
        for i in 0..<50 {
            stream += frame(length: 18 + (i * 37) % 200, seq: UInt32(i))
            ends.append(stream.count)
        }
        XCTAssertEqual(scan(stream, maxFrame: 1000), .frames(consumed: stream.count, count: 50))
        // Every cut point: consumed is the last frame end at or before it.
        for cut in 0...stream.count {
            let whole = ends.filter { $0 <= cut }
            XCTAssertEqual(scan(Array(stream[0..<cut]), maxFrame: 1000), .frames(consumed: whole.last ?? 0, count: whole.count), "cut \(cut)")
        }
        for bad: UInt32 in [0, 5, 17, 1001, 0xFFFF_FFFF] {
            let withBad = stream + TestClient.rawHeader(length: bad) + frame(length: 30)
            XCTAssertEqual(scan(withBad, maxFrame: 1000), .badLength(bad, offset: stream.count, count: 50), "bad length \(bad)")
        }
    }

    // MARK: FrameAssembly

    func testAssemblyOneReadPerStream() {
        let pool = ChunkPool()
        let (stream, count) = frameStream(seed: 2, frames: 30, maxBody: 300)
        let h = AssemblyHarness(pool: pool, maxFrame: 1000)
        XCTAssertTrue(h.feed(stream[...]))
        XCTAssertEqual(h.emittedBytes(), stream)
        XCTAssertEqual(h.frames, count)
        XCTAssertEqual(h.descriptorCount, 1, "whole frames in one read stay in place: one descriptor")
        h.finish()
    }

    func testAssemblySplitAtEveryPosition() {
        let pool = ChunkPool()
        let (stream, count) = frameStream(seed: 3, frames: 40, maxBody: 120)
        for k in 1..<stream.count {
            let h = AssemblyHarness(pool: pool, maxFrame: 1000)
            XCTAssertTrue(h.feed(stream[0..<k]))
            XCTAssertTrue(h.feed(stream[k...]))
            XCTAssertEqual(h.emittedBytes(), stream, "split at \(k)")
            XCTAssertEqual(h.frames, count, "split at \(k)")
            XCTAssertFalse(h.isPartial, "split at \(k)")
            h.finish()
            if testRun?.failureCount ?? 0 > 10 { return }
        }
    }

    func testAssemblySplitAtEveryPairOfPositions() {
        let pool = ChunkPool()
        var stream: [UInt8] = []
        for (i, length) in [18, 19, 45, 22, 18, 31].enumerated() { stream += frame(length: length, seq: UInt32(i)) }
        for i in 1..<stream.count {
            for j in (i + 1)..<stream.count {
                let h = AssemblyHarness(pool: pool, maxFrame: 1000)
                XCTAssertTrue(h.feed(stream[0..<i]))
                XCTAssertTrue(h.feed(stream[i..<j]))
                XCTAssertTrue(h.feed(stream[j...]))
                XCTAssertEqual(h.emittedBytes(), stream, "splits at \(i), \(j)")
                XCTAssertEqual(h.frames, 6)
                h.finish()
                if testRun?.failureCount ?? 0 > 10 { return }
            }
        }
    }

    func testAssemblyByteByByte() {
        let pool = ChunkPool()
        let (stream, count) = frameStream(seed: 4, frames: 60, maxBody: 200)
        let h = AssemblyHarness(pool: pool, maxFrame: 1000)
        for i in stream.indices { XCTAssertTrue(h.feed(stream[i..<(i + 1)])) }
        XCTAssertEqual(h.emittedBytes(), stream)
        XCTAssertEqual(h.frames, count)
        XCTAssertEqual(h.descriptorCount, count, "each frame completed from copies: one descriptor each")
        h.finish()
    }

    func testAssemblyThousandsCoalescedAndRandomReads() {
        let pool = ChunkPool()
        let (stream, count) = frameStream(seed: 5, frames: 3000, maxBody: 60)
        // 1000 frames in one read.
        var firstThousand = 0
        var offset = 0
        for _ in 0..<1000 {
            offset += Int(stream.withUnsafeBytes { FrameHeader.length(at: $0.baseAddress! + offset) })
        }
        firstThousand = offset
        do {
            let h = AssemblyHarness(pool: pool, maxFrame: 1000)
            XCTAssertTrue(h.feed(stream[0..<firstThousand]))
            XCTAssertEqual(h.frames, 1000)
            XCTAssertEqual(h.descriptorCount, 1)
            XCTAssertEqual(h.emittedBytes(), Array(stream[0..<firstThousand]))
            h.finish()
        }
        // All 3000 in one read larger than a read block (a huge chunk holds them).
        do {
            let h = AssemblyHarness(pool: pool, maxFrame: 1000)
            XCTAssertTrue(h.feed(stream[...]))
            XCTAssertEqual(h.frames, count)
            XCTAssertEqual(h.emittedBytes(), stream)
            h.finish()
        }
        // Reads of random sizes, the block filling up and being replaced as in ReceiveStage.
        for seed: UInt64 in 1...8 {
            var random = TestRandom(seed: seed)
            let h = AssemblyHarness(pool: pool, maxFrame: 1000)
            var at = 0
            while at < stream.count {
                let n = min(stream.count - at, 1 + random.below(seed.isMultiple(of: 2) ? 100 : 9000))
                XCTAssertTrue(h.feed(stream[at..<(at + n)]))
                at += n
            }
            XCTAssertEqual(h.frames, count, "seed \(seed)")
            XCTAssertEqual(h.emittedBytes(), stream, "seed \(seed)")
            h.finish()
        }
    }

    func testAssemblyMaxFrameAndFramesLargerThanABlock() {
        let pool = ChunkPool()
        // Exactly maxFrame is accepted, split anywhere.
        let big = frame(length: 300)
        for k in stride(from: 1, to: 300, by: 7) {
            let h = AssemblyHarness(pool: pool, maxFrame: 300)
            XCTAssertTrue(h.feed(big[0..<k]))
            XCTAssertTrue(h.feed(big[k...]))
            XCTAssertEqual(h.emittedBytes(), big)
            h.finish()
        }
        // A frame bigger than the 64 KiB read block (its own huge chunk), in pieces.
        let huge = frame(length: 200_000, seq: 9) + frame(length: 18, seq: 10)
        for k in stride(from: 1, to: huge.count, by: 9_973) {
            let h = AssemblyHarness(pool: pool, maxFrame: 1 << 20)
            var at = 0
            for piece in [k, 65_536, 65_536, huge.count] {
                let n = min(piece, huge.count - at)
                if n > 0 { XCTAssertTrue(h.feed(huge[at..<(at + n)])) }
                at += n
            }
            XCTAssertEqual(h.frames, 2, "first piece \(k)")
            XCTAssertEqual(h.emittedBytes(), huge, "first piece \(k)")
            h.finish()
        }
    }

    func testAssemblyBadLengthMidStreamAtEverySplit() {
        let pool = ChunkPool()
        let good = frame(length: 40, seq: 1) + frame(length: 18, seq: 2) + frame(length: 77, seq: 3)
        for bad: UInt32 in [0, 5, 17, 301, 0xFFFF_FFFF] {
            let stream = good + TestClient.rawHeader(length: bad) + frame(length: 25, seq: 4)
            // In one read, split at every position, and byte by byte.
            for k in 0..<stream.count {
                let h = AssemblyHarness(pool: pool, maxFrame: 300)
                if k == 0 || h.feed(stream[0..<k]) {
                    XCTAssertFalse(h.feed(stream[k...]), "bad \(bad) split \(k): not reported")
                }
                XCTAssertEqual(h.badLength, bad, "split \(k)")
                XCTAssertEqual(h.frames, 3, "bad \(bad) split \(k): frames before the bad one")
                XCTAssertEqual(h.emittedBytes(), good, "bad \(bad) split \(k)")
                h.finish()
                if testRun?.failureCount ?? 0 > 10 { return }
            }
            let h = AssemblyHarness(pool: pool, maxFrame: 300)
            var i = 0
            while i < stream.count, h.feed(stream[i..<(i + 1)]) { i += 1 }
            XCTAssertEqual(i, good.count + 3, "bad \(bad): reported on the 4th byte of its length")
            XCTAssertEqual(h.badLength, bad)
            XCTAssertEqual(h.frames, 3)
            XCTAssertEqual(h.emittedBytes(), good)
            h.finish()
        }
    }

    // MARK: helpers

    /// `frames` frames with bodies of 0..<maxBody bytes, concatenated.
    private func frameStream(seed: UInt64, frames: Int, maxBody: Int) -> ([UInt8], Int) {
        var random = TestRandom(seed: seed)
        var stream: [UInt8] = []
        for i in 0..<frames {
            let body = i % 5 == 0 ? 0 : random.below(maxBody)
            stream += TestClient.frame(seq: UInt32(i), cmd: UInt16(i % 7), uid: UInt32(i * 3), bodySize: body)
        }
        return (stream, frames)
    }
}

/// Feeds bytes to a FrameAssembly the way ReceiveStage does (a shared read
/// block, reused past `blockEnd`, replaced when full), keeps every emitted
/// descriptor until `finish()`, and checks the reference and descriptor rules.
final class AssemblyHarness {
    let pool: ChunkPool
    let maxFrame: Int
    private var assembly = FrameAssembly()
    private var block: Chunk?
    private var blockUsed = 0
    private var descriptors: [FrameDescriptor] = []
    private(set) var frames = 0
    private(set) var badLength: UInt32?

    init(pool: ChunkPool, maxFrame: Int) {
        self.pool = pool
        self.maxFrame = maxFrame
    }

    var isPartial: Bool { assembly.isPartial }
    var descriptorCount: Int { descriptors.count }

    /// One read of `bytes`; false once a bad length was reported.
    func feed(_ bytes: ArraySlice<UInt8>, file: StaticString = #filePath, line: UInt = #line) -> Bool {
        precondition(badLength == nil && !bytes.isEmpty)
        if block == nil || block!.capacity - blockUsed < bytes.count {
            if let block { pool.release(block) }
            block = pool.allocate(capacity: max(ChunkPool.blockCapacity, bytes.count))
            blockUsed = 0
        }
        let b = block!
        let start = blockUsed
        bytes.withUnsafeBytes { (b.bytes + start).copyMemory(from: $0.baseAddress!, byteCount: $0.count) }
        var emitted: [FrameDescriptor] = []
        let outcome = assembly.consume(block: b, start: start, count: bytes.count, maxFrame: maxFrame, pool: pool) { emitted.append($0) }
        XCTAssertLessThanOrEqual(emitted.count, 2, "emit is called at most twice per read", file: file, line: line)
        var framesInDescriptors = 0
        for d in emitted {
            // Every descriptor covers whole valid frames and nothing else.
            switch FrameCutter.scan(d.start, Int(d.length), maxFrame: maxFrame) {
            case .frames(let consumed, let n):
                XCTAssertEqual(consumed, Int(d.length), "descriptor ends mid-frame", file: file, line: line)
                XCTAssertGreaterThan(n, 0, "empty descriptor", file: file, line: line)
                framesInDescriptors += n
            case .badLength(let length, _, _):
                XCTFail("descriptor holds a bad length \(length)", file: file, line: line)
            }
            XCTAssertLessThanOrEqual(Int(d.offset) + Int(d.length), d.chunk.capacity, "descriptor past its chunk", file: file, line: line)
        }
        descriptors += emitted
        switch outcome {
        case .ok(let end, let n):
            XCTAssertEqual(n, framesInDescriptors, "frame count vs descriptors", file: file, line: line)
            XCTAssert(end >= start && end <= start + bytes.count, "blockEnd \(end) outside \(start)...\(start + bytes.count)", file: file, line: line)
            frames += n
            // Bytes past blockEnd were copied out: the next read may overwrite them.
            (b.bytes + end).initializeMemory(as: UInt8.self, repeating: 0xEE, count: start + bytes.count - end)
            blockUsed = end
            return true
        case .badLength(let length, let n):
            XCTAssertEqual(n, framesInDescriptors, "frame count vs descriptors", file: file, line: line)
            frames += n
            badLength = length
            return false
        }
    }

    /// The bytes of every descriptor, in order.
    func emittedBytes() -> [UInt8] {
        var out: [UInt8] = []
        for d in descriptors { out += UnsafeRawBufferPointer(start: d.start, count: Int(d.length)) }
        return out
    }

    /// Checks that each chunk holds one reference per descriptor (plus the
    /// harness's own on the current block), then releases everything.
    func finish(file: StaticString = #filePath, line: UInt = #line) {
        var expected: [UnsafeMutableRawPointer: Int32] = [:]
        for d in descriptors { expected[d.chunk.base, default: 0] += 1 }
        if let block { expected[block.base, default: 0] += 1 }
        for (base, n) in expected {
            XCTAssertEqual(base.load(as: Int32.self), n, "chunk reference count", file: file, line: line)
        }
        for d in descriptors { pool.release(d.chunk) }
        descriptors = []
        if let block { pool.release(block) }
        block = nil
        assembly.discard(pool: pool)
    }
}
