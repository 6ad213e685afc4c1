/// SHA-1 (FIPS 180-4) over a byte range, for the WebSocket handshake's accept value
/// (RFC 6455 4.2.2) and nothing else: SHA-1 is not used here for security.
/// No allocation: the block and the schedule live on the stack.
public enum SHA1 {
    public static let digestSize = 20

    /// Hashes `count` bytes at `p` and writes the 20-byte digest to `out`.
    public static func digest(_ p: UnsafeRawPointer, count: Int, into out: UnsafeMutableRawPointer) {
        var h: (UInt32, UInt32, UInt32, UInt32, UInt32) = (0x6745_2301, 0xEFCD_AB89, 0x98BA_DCFE, 0x1032_5476, 0xC3D2_E1F0)
        withUnsafeTemporaryAllocation(of: UInt32.self, capacity: 16) { w in
            var at = 0
            while count - at >= 64 {
                load(w, from: p + at, count: 64)
                compress(&h, w)
                at += 64
            }
            // The tail, the 0x80 marker and the bit length: one or two more blocks.
            withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 128) { tail in
                let rest = count - at
                let base = UnsafeMutableRawPointer(tail.baseAddress!)
                base.initializeMemory(as: UInt8.self, repeating: 0, count: 128)
                base.copyMemory(from: p + at, byteCount: rest)
                base.storeBytes(of: 0x80, toByteOffset: rest, as: UInt8.self)
                let blocks = rest + 9 <= 64 ? 1 : 2
                base.storeBytes(of: (UInt64(count) &* 8).bigEndian, toByteOffset: blocks * 64 - 8, as: UInt64.self)
                for b in 0..<blocks {
                    load(w, from: base + b * 64, count: 64)
                    compress(&h, w)
                }
            }
        }
        out.storeBytes(of: h.0.bigEndian, toByteOffset: 0, as: UInt32.self)
        out.storeBytes(of: h.1.bigEndian, toByteOffset: 4, as: UInt32.self)
        out.storeBytes(of: h.2.bigEndian, toByteOffset: 8, as: UInt32.self)
        out.storeBytes(of: h.3.bigEndian, toByteOffset: 12, as: UInt32.self)
        out.storeBytes(of: h.4.bigEndian, toByteOffset: 16, as: UInt32.self)
    }

    @inline(__always)
    private static func load(_ w: UnsafeMutableBufferPointer<UInt32>, from p: UnsafeRawPointer, count: Int) {
        for i in 0..<16 { w[i] = UInt32(bigEndian: p.loadUnaligned(fromByteOffset: 4 * i, as: UInt32.self)) }
    }

    /// One 64-byte block; the message schedule is kept as a 16-word circle.
    private static func compress(_ h: inout (UInt32, UInt32, UInt32, UInt32, UInt32),
                                 _ w: UnsafeMutableBufferPointer<UInt32>) {
        var (a, b, c, d, e) = h
        for t in 0..<80 {
            let word: UInt32
            if t < 16 {
                word = w[t]
            } else {
                let x = w[(t - 3) & 15] ^ w[(t - 8) & 15] ^ w[(t - 14) & 15] ^ w[t & 15]
                word = x << 1 | x >> 31
                w[t & 15] = word
            }
            let f: UInt32, k: UInt32
            switch t {
            case 0..<20: (f, k) = ((b & c) | (~b & d), 0x5A82_7999)
            case 20..<40: (f, k) = (b ^ c ^ d, 0x6ED9_EBA1)
            case 40..<60: (f, k) = ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC)
            default: (f, k) = (b ^ c ^ d, 0xCA62_C1D6)
            }
            let temp = (a << 5 | a >> 27) &+ f &+ e &+ k &+ word
            e = d
            d = c
            c = b << 30 | b >> 2
            b = a
            a = temp
        }
        h = (h.0 &+ a, h.1 &+ b, h.2 &+ c, h.3 &+ d, h.4 &+ e)
    }
}
