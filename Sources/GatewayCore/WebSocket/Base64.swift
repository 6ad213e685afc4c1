/// Standard base64 (RFC 4648, with padding), only what the handshake needs: encoding a
/// digest and checking a key's alphabet.
enum Base64 {
    private static let alphabet = Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/".utf8)

    /// Writes `4 * ceil(count / 3)` characters for `count` bytes.
    static func encode(_ p: UnsafeRawPointer, count: Int, into out: UnsafeMutableRawPointer) {
        var i = 0, o = 0
        while i < count {
            let b0 = UInt32(p.load(fromByteOffset: i, as: UInt8.self))
            let b1 = i + 1 < count ? UInt32(p.load(fromByteOffset: i + 1, as: UInt8.self)) : 0
            let b2 = i + 2 < count ? UInt32(p.load(fromByteOffset: i + 2, as: UInt8.self)) : 0
            let v = b0 << 16 | b1 << 8 | b2
            out.storeBytes(of: alphabet[Int(v >> 18 & 63)], toByteOffset: o, as: UInt8.self)
            out.storeBytes(of: alphabet[Int(v >> 12 & 63)], toByteOffset: o + 1, as: UInt8.self)
            out.storeBytes(of: i + 1 < count ? alphabet[Int(v >> 6 & 63)] : 0x3D, toByteOffset: o + 2, as: UInt8.self)
            out.storeBytes(of: i + 2 < count ? alphabet[Int(v & 63)] : 0x3D, toByteOffset: o + 3, as: UInt8.self)
            i += 3
            o += 4
        }
    }

    /// A character's 6-bit value, or nil outside the alphabet (padding included).
    static func value(of c: UInt8) -> UInt8? {
        switch c {
        case 0x41...0x5A: return c - 0x41
        case 0x61...0x7A: return c - 0x61 + 26
        case 0x30...0x39: return c - 0x30 + 52
        case 0x2B: return 62
        case 0x2F: return 63
        default: return nil
        }
    }
}
