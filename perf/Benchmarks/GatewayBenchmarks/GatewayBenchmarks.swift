// Micro-benchmarks of the engine's hot parts (ordo-one/benchmark).
// Run from perf/:  swift package benchmark            (all)
//                  swift package benchmark --filter 'FrameHeader.*'
import Benchmark
import GatewayCore

/// `count` back-to-back frames of `size` bytes each (header + body), with
/// distinct header fields so nothing folds into a constant.
private func makeFrames(count: Int, size: Int) -> UnsafeMutableRawBufferPointer {
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: count * size, alignment: 16)
    buffer.initializeMemory(as: UInt8.self, repeating: 0xA5)
    for i in 0..<count {
        let header = FrameHeader(
            length: UInt32(size), seq: UInt32(i), cmd: UInt16(truncatingIfNeeded: i & 0x7FFF),
            status: 0, uid: UInt32(i &* 7))
        header.encode(into: buffer.baseAddress! + i * size)
    }
    return buffer
}

// Inputs built once (scratch64 is the encode target).
nonisolated(unsafe) private let headers64 = makeFrames(count: batch, size: 64)
nonisolated(unsafe) private let scratch64 = makeFrames(count: batch, size: 64)
nonisolated(unsafe) private let block512 = makeFrames(count: 64 * 1024 / 512, size: 512)

/// Headers per iteration in the header benchmarks: the times are per 1,000 headers,
/// which keeps nanosecond resolution meaningful (one header takes about a nanosecond).
private let batch = 1000

let benchmarks: @Sendable () -> Void = {
    Benchmark.defaultConfiguration = .init(
        metrics: [.wallClock, .throughput, .mallocCountTotal],
        warmupIterations: 10,
        scalingFactor: .one,
        maxDuration: .seconds(2),
        maxIterations: 1_000_000
    )

    Benchmark("FrameHeader(decoding:) x1000 headers") { benchmark in
        let base = UnsafeRawPointer(headers64.baseAddress!)
        for _ in benchmark.scaledIterations {
            var sum: UInt64 = 0
            for i in 0..<batch {
                let h = FrameHeader(decoding: base + i &* 64)
                sum &+= UInt64(h.length) &+ UInt64(h.seq) &+ UInt64(h.cmd) &+ UInt64(h.status) &+ UInt64(h.uid)
            }
            blackHole(sum)
        }
    }

    Benchmark("FrameHeader.length(at:) x1000 headers") { benchmark in
        let base = UnsafeRawPointer(headers64.baseAddress!)
        for _ in benchmark.scaledIterations {
            var sum: UInt64 = 0
            for i in 0..<batch {
                sum &+= UInt64(FrameHeader.length(at: base + i &* 64))
            }
            blackHole(sum)
        }
    }

    Benchmark("FrameHeader.encode(into:) x1000 headers") { benchmark in
        let base = scratch64.baseAddress!
        for round in benchmark.scaledIterations {
            for i in 0..<batch {
                FrameHeader(length: 64, seq: UInt32(truncatingIfNeeded: round &+ i), cmd: 1, status: 0, uid: 9)
                    .encode(into: base + i &* 64)
            }
            blackHole(base.load(as: UInt8.self))
        }
    }

    // A reference cut loop built from FrameHeader.length(at:) alone: walk one 64 KiB
    // read block of 512-byte frames (128 frames), check every length, count whole
    // frames. The floor that the engine's frame cutter is measured against.
    Benchmark("Reference cut loop, 64 KiB block of 512 B frames") { benchmark in
        let base = UnsafeRawPointer(block512.baseAddress!)
        let total = block512.count
        let maxFrame: UInt32 = 1 << 20
        for _ in benchmark.scaledIterations {
            var offset = 0
            var frames = 0
            while total &- offset >= FrameHeader.size {
                let length = FrameHeader.length(at: base + offset)
                if length < UInt32(FrameHeader.size) || length > maxFrame { break }
                if total &- offset < Int(length) { break }
                offset &+= Int(length)
                frames &+= 1
            }
            blackHole(frames)
        }
    }
}
