// libFuzzer target for the client frame codec: FrameCutter.scan, FrameAssembly.consume
// and the ChunkPool/Chunk reference counting. Built with swiftc by Tools/fuzz.sh
// (compiled into one module with the real engine files), never by SwiftPM.
//
// The input is the byte stream of one connection. It is fed
//   1. whole to FrameCutter.scan (the reference result),
//   2. whole to FrameAssembly.consume (one read),
//   3. split at up to four positions derived from bytes 4...11 (the first frame's
//      seq/cmd fields, free in a valid frame) into successive reads,
//   4. one byte per read.
// Invariants (precondition): every emitted frame has a valid length, the frames
// plus what remains add up to the input, every feeding gives the same frames and
// the same bad length (or none), and every chunk is back in the pool at the end.

import Glibc

/// Frame limits to exercise, around the pool's size classes (256, 1K, 4K).
private let maxFrames = [4096, 300, 1100, 18]

private struct Result: Equatable {
    var frames: [[UInt8]] = []
    var badLength: UInt32? = nil
}

private func u32(_ bytes: UnsafeRawPointer, _ at: Int) -> UInt32 {
    FrameHeader.length(at: bytes + at)
}

/// Reference: FrameCutter.scan over the whole input, checked against a plain walk.
private func scanWhole(_ p: UnsafeRawPointer, _ n: Int, maxFrame: Int) -> Result {
    var r = Result()
    let scan = FrameCutter.scan(p, n, maxFrame: maxFrame)
    // Independent walk of the same bytes.
    var at = 0
    var expectBad: UInt32? = nil
    while n - at >= 4 {
        let length = u32(p, at)
        if length < 18 || Int(length) > maxFrame { expectBad = length; break }
        if n - at < Int(length) { break }
        r.frames.append(Array(UnsafeRawBufferPointer(start: p + at, count: Int(length))))
        at += Int(length)
    }
    switch scan {
    case .frames(let consumed, let count):
        precondition(expectBad == nil, "scan missed bad length \(String(describing: expectBad))")
        precondition(consumed == at && count == r.frames.count, "scan \(scan) vs walk at=\(at) count=\(r.frames.count)")
        precondition(consumed <= n)
        let rest = n - consumed
        // What remains is an incomplete frame: under 4 bytes, or fewer than its (valid) length.
        if rest >= 4 {
            let l = u32(p, consumed)
            precondition(FrameCutter.isValid(l, maxFrame: maxFrame) && Int(l) > rest, "remainder \(rest) with length \(l)")
        }
    case .badLength(let length, let offset, let count):
        precondition(expectBad == length, "scan bad \(length) vs walk \(String(describing: expectBad))")
        precondition(offset == at && count == r.frames.count, "scan \(scan) vs walk at=\(at) count=\(r.frames.count)")
        precondition(!FrameCutter.isValid(length, maxFrame: maxFrame))
        precondition(n - offset >= 4 && u32(p, offset) == length)
        r.badLength = length
    }
    return r
}

/// Splits a run descriptor into its frames, checking each length.
private func framesOfRun(_ start: UnsafeRawPointer, _ length: Int, maxFrame: Int) -> [[UInt8]] {
    var out: [[UInt8]] = []
    var at = 0
    while at < length {
        precondition(length - at >= 4, "run of \(length) ends in a fragment at \(at)")
        let l = Int(u32(start, at))
        precondition(FrameCutter.isValid(UInt32(l), maxFrame: maxFrame), "emitted frame of bad length \(l)")
        precondition(at + l <= length, "frame at \(at) of length \(l) overruns run of \(length)")
        out.append(Array(UnsafeRawBufferPointer(start: start + at, count: l)))
        at += l
    }
    return out
}

/// Feeds `p[0..<n]` as successive reads ending at `cuts` (strictly increasing, last == n).
private func feed(_ p: UnsafeRawPointer, _ n: Int, cuts: [Int], maxFrame: Int, blockStart: Int) -> Result {
    let pool = ChunkPool(retainedBytes: 64 << 20)
    var assembly = FrameAssembly()
    var r = Result()
    var held: [FrameDescriptor] = []
    var seen: [UnsafeMutableRawPointer: Int] = [:]  // chunk base -> capacity
    var from = 0
    var given = 0
    for cut in cuts {
        let count = cut - from
        precondition(count > 0)
        let block = pool.allocate(capacity: ChunkPool.blockCapacity)
        seen[block.base] = block.capacity
        precondition(blockStart + count <= block.capacity)
        (block.bytes + blockStart).copyMemory(from: p + from, byteCount: count)
        given += count
        var emitted = 0
        var framesEmitted = 0
        var runBytes = 0
        let outcome = assembly.consume(block: block, start: blockStart, count: count, maxFrame: maxFrame, pool: pool) { d in
            emitted += 1
            seen[d.chunk.base] = d.chunk.capacity
            precondition(Int(d.offset) + Int(d.length) <= d.chunk.capacity, "descriptor past its chunk")
            let fs = framesOfRun(d.start, Int(d.length), maxFrame: maxFrame)
            precondition(!fs.isEmpty, "empty descriptor")
            if d.chunk == block {
                precondition(Int(d.offset) >= blockStart && Int(d.offset) + Int(d.length) <= blockStart + count,
                             "run outside the bytes just read")
                runBytes += Int(d.length)
            } else {
                precondition(fs.count == 1 && d.offset == 0, "an assembled chunk holds exactly one frame")
            }
            framesEmitted += fs.count
            r.frames += fs
            held.append(d)
        }
        precondition(emitted <= 2, "consume emitted \(emitted) descriptors")
        pool.release(block)  // the reader's own reference
        switch outcome {
        case .ok(let blockEnd, let frames):
            precondition(frames == framesEmitted, "outcome says \(frames) frames, emitted \(framesEmitted)")
            precondition(blockEnd >= blockStart && blockEnd <= blockStart + count, "blockEnd \(blockEnd) out of range")
            precondition(blockEnd - blockStart >= runBytes, "blockEnd \(blockEnd) before the run's end")
            from = cut
        case .badLength(let length, let frames):
            precondition(frames == framesEmitted, "bad outcome says \(frames) frames, emitted \(framesEmitted)")
            precondition(!FrameCutter.isValid(length, maxFrame: maxFrame))
            r.badLength = length
        }
        if r.badLength != nil { break }
    }
    // Bytes accounted for: emitted frames plus the partial frame, when the stream ended cleanly.
    let emittedBytes = r.frames.reduce(0) { $0 + $1.count }
    if r.badLength == nil {
        precondition(given == n)
        precondition(emittedBytes <= n)
        precondition(assembly.isPartial == (emittedBytes < n), "partial=\(assembly.isPartial) with \(n - emittedBytes) left")
    }
    for d in held { pool.release(d.chunk) }
    assembly.discard(pool: pool)
    precondition(!assembly.isPartial)
    // Every chunk is back on a free list: its refcount dropped to exactly zero.
    // (All capacities here are within the pool's classes, so released chunks stay allocated.)
    for (base, capacity) in seen {
        precondition(capacity <= ChunkPool.blockCapacity)
        let refs = base.load(as: Int32.self)
        precondition(refs == 0, "chunk \(base) of capacity \(capacity) still has \(refs) references")
    }
    return r  // the pool's deinit frees its chunks; a leaked one shows up in LeakSanitizer
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let n = size
    if n == 0 || n > 16 << 10 { return 0 }
    let p = UnsafeRawPointer(data)
    let b = { (i: Int) -> Int in i < n ? Int(data[i]) : 0 }
    let maxFrame = maxFrames[b(12) & 3]
    let blockStart = b(13) & 31

    let reference = scanWhole(p, n, maxFrame: maxFrame)

    let whole = feed(p, n, cuts: [n], maxFrame: maxFrame, blockStart: blockStart)
    precondition(whole == reference, "whole feed differs from scan: \(whole.frames.count) frames bad=\(String(describing: whole.badLength)) vs \(reference.frames.count) bad=\(String(describing: reference.badLength))")

    var cuts = Set<Int>()
    for i in 0..<4 { cuts.insert((b(4 + 2 * i) << 8 | b(5 + 2 * i)) % (n + 1)) }
    cuts.insert(n)
    cuts.remove(0)
    let split = feed(p, n, cuts: cuts.sorted(), maxFrame: maxFrame, blockStart: blockStart)
    precondition(split == reference, "split feed \(cuts.sorted()) differs: \(split.frames.count) frames bad=\(String(describing: split.badLength)) vs \(reference.frames.count) bad=\(String(describing: reference.badLength))")

    if n <= 8192 {
        let bytewise = feed(p, n, cuts: Array(1...n), maxFrame: maxFrame, blockStart: blockStart)
        precondition(bytewise == reference, "byte-per-read feed differs: \(bytewise.frames.count) frames bad=\(String(describing: bytewise.badLength)) vs \(reference.frames.count) bad=\(String(describing: reference.badLength))")
    }
    return 0
}
