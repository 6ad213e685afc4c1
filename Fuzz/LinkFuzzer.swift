// libFuzzer target for the link codec (LinkMessage, docs/LINK.md). Built with
// swiftc by Tools/fuzz.sh together with the real engine files, never by SwiftPM.
//
// The input is the byte stream of one link. FrameCutter cuts it with the link
// limit (max_frame + 38, PUSH's overhead); every whole frame is copied into an allocation of
// exactly its length (so ASan sees any read past it) and decoded. Checks:
//  - decode succeeds exactly when docs/LINK.md says the frame is well formed,
//    and fails with the matching reason otherwise;
//  - for a decoded message m: decode(encode(m)) == m, and the encoded bytes
//    equal the frame's bytes except where the spec lets them differ: seq and
//    uid of the outer header (ignored), status outside HELLO (0 on the wire,
//    not checked on receipt), and the reserved bytes (OPENED 33,
//    CLOSED 31-33, MOVE 35). For DATA the inner client frame is copied after the overhead.

import Glibc

private let maxFrame = 4096
private let linkLimit = maxFrame + LinkMessage.maxOverhead

private let fixed: [UInt16: Int] = [0xFF10: 40, 0xFF1E: 34, 0xFF11: 18, 0xFF12: 52, 0xFF14: 34, 0xFF15: 24,
                                    0xFF16: 34, 0xFF17: 30, 0xFF18: 34, 0xFF19: 34, 0xFF1B: 38, 0xFF1C: 38, 0xFF1D: 46,
                                    0xFF1F: 54]
/// Messages whose byte 18 is a scope (1...4) and bytes 19-21 reserved.
private let scoped: Set<UInt16> = [0xFF1A, 0xFF1B, 0xFF1C, 0xFF1D]

/// Byte offsets the spec does not pin for a command (beyond seq 4-7 and uid 14-17).
private func ignored(cmd: UInt16) -> Set<Int> {
    var s: Set<Int> = [4, 5, 6, 7, 14, 15, 16, 17]
    if cmd != LinkMessage.Command.hello { s.formUnion(10...13) }  // status: 0 except in HELLO
    switch cmd {
    case LinkMessage.Command.opened: s.insert(33)
    case LinkMessage.Command.closed: s.formUnion(31...33)
    case LinkMessage.Command.move: s.insert(35)
    case _ where scoped.contains(cmd): s.formUnion(19...21)
    default: break
    }
    return s
}

private func be32(_ p: UnsafeRawPointer, _ at: Int) -> UInt32 {
    UInt32(bigEndian: p.loadUnaligned(fromByteOffset: at, as: UInt32.self))
}

private func check(frame q: UnsafeRawPointer, length: Int) {
    let cmd = UInt16(bigEndian: q.loadUnaligned(fromByteOffset: 8, as: UInt16.self))
    // The spec's verdict, computed independently of the decoder.
    var wellFormed = false
    if cmd == LinkMessage.Command.data {
        if length >= 34 {
            let inner = Int(be32(q, 30))
            wellFormed = inner == length - 30 && inner >= 18 && inner <= maxFrame
        }
    } else if cmd == LinkMessage.Command.push {
        if length >= 56 {
            let inner = Int(be32(q, 38))
            wellFormed = inner == length - 38 && inner >= 18 && inner <= maxFrame
        }
    } else if let want = fixed[cmd] {
        wellFormed = length == want
    }
    let scopeOK = !scoped.contains(cmd) || length <= 18 || (1...4).contains(q.load(fromByteOffset: 18, as: UInt8.self))
    let lengthOK = wellFormed
    wellFormed = wellFormed && scopeOK
    let kindOK = cmd != LinkMessage.Command.move || !lengthOK
        || (1...3).contains(q.load(fromByteOffset: 30, as: UInt8.self))
    wellFormed = wellFormed && kindOK

    switch LinkMessage.decode(q, maxFrame: maxFrame) {
    case .failure(let why):
        precondition(!wellFormed, "decode rejected a well-formed frame (cmd 0x\(String(cmd, radix: 16)), length \(length)): \(why)")
        let variable = cmd == LinkMessage.Command.data || cmd == LinkMessage.Command.push
        switch why {
        case .unknownCommand(let c):
            precondition(c == cmd && !variable && fixed[cmd] == nil, "\(why) for cmd 0x\(String(cmd, radix: 16))")
        case .badLength(let c, let l):
            precondition(c == cmd && Int(l) == length, "\(why) for cmd 0x\(String(cmd, radix: 16)) length \(length)")
            precondition(variable || fixed[cmd] != nil, "\(why) for an unknown command")
        case .badInnerLength(let outer, let inner):
            let at = cmd == LinkMessage.Command.data ? 30 : 38
            precondition(variable && Int(outer) == length && length >= at + 18 && inner == be32(q, at),
                         "\(why) for cmd 0x\(String(cmd, radix: 16)) length \(length)")
        case .badScope(let scope):
            precondition(lengthOK && !scopeOK && scope == q.load(fromByteOffset: 18, as: UInt8.self),
                         "\(why) for cmd 0x\(String(cmd, radix: 16))")
        case .badMoveKind(let kind):
            precondition(lengthOK && !kindOK && kind == q.load(fromByteOffset: 30, as: UInt8.self), "\(why)")
        }
    case .success(let m):
        precondition(wellFormed, "decode accepted a malformed frame (cmd 0x\(String(cmd, radix: 16)), length \(length)): \(m)")
        var total = m.encodedLength
        if case .data(_, let inner) = m {
            precondition(Int(inner) == length - LinkMessage.dataOverhead, "DATA inner \(inner) for length \(length)")
            total += Int(inner)
        }
        if case .push(_, let inner) = m {
            precondition(Int(inner) == length - LinkMessage.pushOverhead, "PUSH inner \(inner) for length \(length)")
            total += Int(inner)
        }
        precondition(total == length, "\(m) encodes to \(total) bytes, frame has \(length)")
        let e = UnsafeMutableRawPointer.allocate(byteCount: total, alignment: 1)
        defer { e.deallocate() }
        // Garbage in the header's free fields, to check encode writes every byte it owns.
        e.initializeMemory(as: UInt8.self, repeating: 0xA5, count: total)
        m.encode(into: e)
        if total > m.encodedLength {
            (e + m.encodedLength).copyMemory(from: q + m.encodedLength, byteCount: total - m.encodedLength)
        }
        precondition(be32(e, 0) == UInt32(length), "encoded length field \(be32(e, 0)) != \(length)")
        precondition(be32(e, 4) == 0 && be32(e, 14) == 0, "encode leaves seq/uid non-zero")
        let skip = ignored(cmd: cmd)
        for i in 0..<total where !skip.contains(i) {
            let a = q.load(fromByteOffset: i, as: UInt8.self), b = e.load(fromByteOffset: i, as: UInt8.self)
            precondition(a == b, "\(m): byte \(i) is \(a) in the frame, \(b) re-encoded")
        }
        for i in skip where i >= 18 {
            precondition(e.load(fromByteOffset: i, as: UInt8.self) == 0, "\(m): reserved byte \(i) encoded non-zero")
        }
        switch LinkMessage.decode(e, maxFrame: maxFrame) {
        case .success(let again): precondition(again == m, "round trip: \(m) -> \(again)")
        case .failure(let why): precondition(false, "round trip of \(m) fails: \(why)")
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let p = UnsafeRawPointer(data)
    let frames: Int
    let consumed: Int
    switch FrameCutter.scan(p, size, maxFrame: linkLimit) {
    case .frames(let c, let n): consumed = c; frames = n
    case .badLength(let l, let offset, let n):
        precondition(!FrameCutter.isValid(l, maxFrame: linkLimit))
        consumed = offset; frames = n
    }
    var at = 0
    var seen = 0
    while at < consumed {
        let length = Int(FrameHeader.length(at: p + at))
        precondition(length >= 18 && length <= linkLimit && at + length <= consumed, "cutter gave frame of length \(length)")
        let q = UnsafeMutableRawPointer.allocate(byteCount: length, alignment: 1)
        q.copyMemory(from: p + at, byteCount: length)
        check(frame: q, length: length)
        q.deallocate()
        at += length
        seen += 1
    }
    precondition(at == consumed && seen == frames, "cutter counted \(frames) frames in \(consumed) bytes, walk found \(seen) in \(at)")
    return 0
}
