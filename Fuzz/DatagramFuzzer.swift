// libFuzzer target for UDP datagrams (docs/UDP.md): DatagramSplitter.split, which checks every datagram
// a client sends, and DatagramPacker.pack, which cuts a session's replies into datagrams. Built with
// swiftc by Tools/fuzz.sh (compiled into one module with the real engine files), never by SwiftPM.
//
// The input is one datagram. Invariants (precondition):
//   1. split agrees with an independent walk: whole frames of 18...max_frame from `start` to the end,
//      after an optional 26-byte token frame, or the right fault;
//   2. the frames of an accepted datagram, given to the packer as a stream cut into iovecs at positions
//      taken from the input and over several writes, come out in order in datagrams of at most
//      `maxPayload` bytes, each frame too large for one replaced by its header with status
//      datagram_too_large; with a token, each datagram that has room begins with the token frame;
//      every chunk the packer took for a carried frame is back in the pool.

import Glibc

private let maxFrames = [4096, 300, 64, 18]
private let payloads = [64, 100, 1472, 9000]

private func walk(_ p: UnsafeRawPointer, _ n: Int, maxFrame: Int) -> DatagramSplitter.Verdict {
    if n < 18 { return .garbage(.runt) }
    var at = 0
    var token: UInt64?
    if p.load(fromByteOffset: 8, as: UInt8.self) == 0xFF && p.load(fromByteOffset: 9, as: UInt8.self) == 0x04 {
        if FrameHeader.length(at: p) != 26 { return .garbage(.badLength) }
        if n < 26 { return .garbage(.partialFrame) }
        var t: UInt64 = 0
        for i in 18..<26 { t = t << 8 | UInt64(p.load(fromByteOffset: i, as: UInt8.self)) }
        token = t
        at = 26
    }
    let start = at
    while at < n {
        if n - at < 18 { return .garbage(.partialFrame) }
        let l = Int(FrameHeader.length(at: p + at))
        if l < 18 || l > maxFrame { return .garbage(.badLength) }
        if l > n - at { return .garbage(.partialFrame) }
        at += l
    }
    return .frames(start: start, token: token)
}

private struct Collect: DatagramSink {
    let maxPayload: Int
    var buffer: UnsafeMutableRawPointer
    var datagrams: [[UInt8]] = []
    mutating func room() -> UnsafeMutableRawPointer { buffer }
    mutating func emit(_ length: Int) {
        precondition(length > 0 && length <= maxPayload, "datagram of \(length) bytes, limit \(maxPayload)")
        datagrams.append(Array(UnsafeRawBufferPointer(start: buffer, count: length)))
    }
}

private func frames(_ bytes: [UInt8]) -> [[UInt8]] {
    var out: [[UInt8]] = []
    var at = 0
    while at < bytes.count {
        let l = bytes[at..<at + 4].reduce(0) { $0 << 8 | Int($1) }
        precondition(l >= 18 && at + l <= bytes.count, "a datagram that is not whole frames")
        out.append(Array(bytes[at..<at + l]))
        at += l
    }
    return out
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let n = size
    if n > 32 << 10 { return 0 }
    let b = { (i: Int) -> Int in i < n ? Int(data[i]) : 0 }
    let maxFrame = maxFrames[b(12) & 3]
    let p = UnsafeRawPointer(data)
    let verdict = DatagramSplitter.split(p, count: n, maxFrame: maxFrame)
    precondition(verdict == walk(p, n, maxFrame: maxFrame), "split \(verdict) vs walk \(walk(p, n, maxFrame: maxFrame))")
    guard case .frames(let start, _) = verdict else { return 0 }

    let input = frames(Array(UnsafeBufferPointer(start: data + start, count: n - start)))
    let maxPayload = payloads[b(13) & 3]
    let token: UInt64? = b(14) & 1 == 0 ? nil : 0x0102_0304_0506_0708
    let packer = DatagramPacker(maxPayload: maxPayload)
    let pool = ChunkPool(retainedBytes: 1 << 20)
    var stream = DatagramPacker.Stream(carry: nil, carryHave: 0, skipLeft: 0)
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: maxPayload, alignment: 8)
    defer { buffer.deallocate() }
    var sink = Collect(maxPayload: maxPayload, buffer: buffer)
    // Cut the stream into iovecs at up to six positions, and into two writes at a seventh.
    let total = n - start
    var cuts = Set<Int>()
    for i in 0..<6 { cuts.insert((b(4 + i) << 8 | b(10 + i)) % (total + 1)) }
    cuts.insert(total)
    let sorted = cuts.sorted()
    let split = (b(15) << 8 | b(16)) % (total + 1)
    var iov: [iovec] = []
    var from = 0
    for cut in sorted where cut > from {
        iov.append(iovec(iov_base: UnsafeMutableRawPointer(mutating: p + start + from), iov_len: cut - from))
        from = cut
    }
    var tooLarge = 0
    // Two writes: the iovecs up to `split` bytes, then the rest (an iovec across it is cut in two).
    var first: [iovec] = [], second: [iovec] = []
    var seen = 0
    for v in iov {
        if seen + v.iov_len <= split {
            first.append(v)
        } else if seen >= split {
            second.append(v)
        } else {
            let k = split - seen
            first.append(iovec(iov_base: v.iov_base, iov_len: k))
            second.append(iovec(iov_base: v.iov_base! + k, iov_len: v.iov_len - k))
        }
        seen += v.iov_len
    }
    for part in [first, second] {
        tooLarge += part.withUnsafeBufferPointer {
            packer.pack($0.baseAddress!, count: $0.count, stream: &stream, token: token, pool: pool, into: &sink)
        }
    }
    precondition(stream.carryHave == 0 && stream.carry == nil && stream.skipLeft == 0, "the stream ended between frames")
    precondition(pool.bytesInUse == 0, "a carry chunk was not released")
    var out: [[UInt8]] = []
    for d in sink.datagrams {
        var fs = frames(d)
        if token != nil, let t = fs.first, t.count == 26, t[8] == 0xFF, t[9] == 0x04 {
            precondition(t[18...] == [1, 2, 3, 4, 5, 6, 7, 8][...], "wrong token")
            fs.removeFirst()
        } else {
            precondition(token == nil || fs.first.map { $0.count + 26 > maxPayload } == true, "token missing")
        }
        out += fs
    }
    let expected = input.map { f -> [UInt8] in
        guard f.count > maxPayload else { return f }
        var h = Array(f[0..<18])
        h[0...3] = [0, 0, 0, 18]
        h[10...13] = [0xFF, 0xFF, 0xFF, 0x06]
        return h
    }
    precondition(out == expected, "packed \(out.count) frames, expected \(expected.count)")
    precondition(tooLarge == input.count { $0.count > maxPayload })
    return 0
}
