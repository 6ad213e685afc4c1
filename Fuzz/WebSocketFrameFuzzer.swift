// libFuzzer target for the WebSocket frame reader (Sources/GatewayCore/WebSocket/WebSocketReader.swift
// and WebSocketFrame.swift). Built with swiftc by Tools/fuzz.sh, never by SwiftPM.
//
// Byte 0 picks the message limit and the reading side; the rest is one connection's bytes, fed
//   1. whole (the reference),
//   2. split at up to four positions derived from bytes 1...8,
//   3. one byte per read.
// Invariants (precondition): every feeding yields the same payload, pings, pongs and ending; a
// read never yields more payload than it had bytes; nothing is yielded after an ending.
// Then a round trip: bytes 9... shape gateway frames packed into messages, fragmented and masked
// as a client would; decoding the encoding gives the frames back, at every split.

import Glibc

private struct Decoded: Equatable {
    var payload: [UInt8] = []
    var pings: [[UInt8]] = []
    var pongs = 0
    var end: WebSocketReader.Outcome? = nil
}

private func decode(_ p: UnsafePointer<UInt8>, _ n: Int, cuts: [Int], maxMessage: Int, fromClient: Bool) -> Decoded {
    var reader = WebSocketReader(fromClient: fromClient)
    var d = Decoded()
    var from = 0
    var buffer = [UInt8](repeating: 0, count: n)
    for cut in cuts where cut > from {
        let count = cut - from
        let outcome = buffer.withUnsafeMutableBytes { b -> WebSocketReader.Outcome in
            b.baseAddress!.copyMemory(from: p + from, byteCount: count)
            return reader.decode(b.baseAddress!, count: count, maxMessage: maxMessage) { e in
                switch e {
                case .ping(let payload):
                    precondition(payload.count <= WebSocketFrame.maxControlPayload)
                    d.pings.append(Array(payload))
                case .pong(let payload):
                    precondition(payload.count <= WebSocketFrame.maxControlPayload)
                    d.pongs += 1
                }
            }
        }
        from = cut
        let yielded: Int
        switch outcome {
        case .ok(let k): yielded = k
        case .closed(_, let k), .failed(_, let k):
            yielded = k
            precondition(d.end == nil)
            d.end = outcome
        }
        precondition(yielded >= 0 && yielded <= count, "yielded \(yielded) of \(count)")
        d.payload += buffer[0..<yielded]
        if d.end != nil {
            // An ended reader takes nothing more.
            var rest = buffer
            let after = rest.withUnsafeMutableBytes { reader.decode($0.baseAddress!, count: count, maxMessage: maxMessage) { _ in
                preconditionFailure("an event after the end")
            } }
            precondition(after == .ok(payload: 0), "input taken after the end")
            break
        }
    }
    // Normalise the ending's payload count: it depends on where the reads fell.
    if case .closed(let code, _) = d.end { d.end = .closed(code: code, payload: 0) }
    if case .failed(let code, _) = d.end { d.end = .failed(code: code, payload: 0) }
    return d
}

/// A client's encoding of messages that carry whole gateway frames: (stream, the frames' bytes).
private func encode(_ shape: UnsafeBufferPointer<UInt8>) -> ([UInt8], [UInt8]) {
    var stream: [UInt8] = []
    var frames: [UInt8] = []
    var i = 0
    var seq: UInt32 = 0
    func next() -> Int { defer { i += 1 }; return i < shape.count ? Int(shape[i]) : 0 }
    func frame(_ body: Int, into message: inout [UInt8]) {
        seq += 1
        var f = [UInt8](repeating: 0, count: 18 + body)
        f.withUnsafeMutableBytes { FrameHeader(length: UInt32(18 + body), seq: seq, cmd: 1).encode(into: $0.baseAddress!) }
        for k in 0..<body { f[18 + k] = UInt8(truncatingIfNeeded: k &+ Int(seq)) }
        message += f
        frames += f
    }
    func write(_ opcode: WebSocketOpcode, _ payload: ArraySlice<UInt8>, fin: Bool, mask: UInt32) {
        var h = [UInt8](repeating: 0, count: WebSocketFrame.maxHeader)
        let n = h.withUnsafeMutableBytes {
            WebSocketFrame.writeHeader(opcode, length: payload.count, mask: mask, fin: fin, into: $0.baseAddress!)
        }
        stream += h[0..<n]
        var body = Array(payload)
        if !body.isEmpty {
            body.withUnsafeMutableBytes {
                WebSocketFrame.unmask($0.baseAddress!, to: $0.baseAddress!, count: $0.count, mask: mask, phase: 0)
            }
        }
        stream += body
    }
    while i < shape.count && stream.count < 6000 {
        let kind = next()
        var message: [UInt8] = []
        for _ in 0..<(kind & 3) { frame(next() * (kind >> 7 == 1 ? 3 : 1), into: &message) }
        // Fragments: cut the message at up to three points, a ping or pong maybe between them.
        var cuts = [next() % (message.count + 1), next() % (message.count + 1), next() % (message.count + 1)]
        cuts = Array(Set(cuts)).sorted().filter { $0 > 0 && $0 < message.count } + [message.count]
        var from = 0
        for (k, cut) in cuts.enumerated() {
            let mask = UInt32(truncatingIfNeeded: next() &* 0x0101_0101 &+ k)
            write(k == 0 ? .binary : .continuation, message[from..<cut], fin: k == cuts.count - 1, mask: mask)
            from = cut
            if kind & 0x10 != 0 && k < cuts.count - 1 {
                let size = next() % 126
                write(kind & 0x20 != 0 ? .ping : .pong, ArraySlice((0..<size).map { UInt8(truncatingIfNeeded: $0) }),
                      fin: true, mask: mask ^ 0x5A5A_5A5A)
            }
        }
    }
    return (stream, frames)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    if size == 0 || size > 16 << 10 { return 0 }
    let maxMessage = [1 << 16, 100, 18, 4096][Int(data[0]) & 3]
    let fromClient = data[0] & 4 == 0
    let p = data + 1
    let n = size - 1
    let b = { (i: Int) -> Int in i < size ? Int(data[i]) : 0 }

    let whole = decode(p, n, cuts: [n], maxMessage: maxMessage, fromClient: fromClient)
    var cutSet = Set<Int>()
    for i in 0..<4 { cutSet.insert((b(1 + 2 * i) << 8 | b(2 + 2 * i)) % (n + 1)) }
    cutSet.insert(n)
    let split = decode(p, n, cuts: cutSet.sorted(), maxMessage: maxMessage, fromClient: fromClient)
    precondition(split == whole, "split at \(cutSet.sorted()) differs: \(split) vs \(whole)")
    if n <= 4096 && n > 0 {
        let bytewise = decode(p, n, cuts: Array(1...n), maxMessage: maxMessage, fromClient: fromClient)
        precondition(bytewise == whole, "byte-per-read differs: \(bytewise) vs \(whole)")
    }

    if size > 9 {
        let (stream, frames) = encode(UnsafeBufferPointer(start: data + 9, count: size - 9))
        stream.withUnsafeBufferPointer { s in
            let m = s.count
            for cuts in [[m], [m / 3, m], [b(1) % (m + 1), m]] {
                let d = decode(s.baseAddress ?? UnsafePointer(bitPattern: 8)!, m, cuts: cuts, maxMessage: 1 << 20,
                               fromClient: true)
                precondition(d.end == nil, "a valid encoding ended \(String(describing: d.end))")
                precondition(d.payload == frames, "round trip lost frames at \(cuts)")
            }
        }
    }
    return 0
}
