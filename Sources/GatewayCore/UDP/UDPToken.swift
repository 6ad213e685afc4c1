import CLinux
import Glibc

/// The address token of a UDP client (docs/UDP.md): SipHash-2-4 of its address and port under a key
/// drawn at start-up. Stateless, like a QUIC retry token: the gateway keeps nothing to check one, a
/// client that returns after its session timed out still holds a valid one, and without the key no
/// one can compute the token of an address whose datagrams they do not see.
struct UDPToken {
    private let k0: UInt64
    private let k1: UInt64

    /// A fresh random key (getrandom); fails only if the kernel has no entropy source at all.
    init() {
        var key: (UInt64, UInt64) = (0, 0)
        let got = withUnsafeMutableBytes(of: &key) { gw_getrandom($0.baseAddress, 16) }
        precondition(got == 16, "getrandom failed: errno \(errno)")
        (k0, k1) = key
    }

    init(k0: UInt64, k1: UInt64) {
        self.k0 = k0
        self.k1 = k1
    }

    func of(_ peer: PeerAddress) -> UInt64 {
        hash(UInt64(peer.family) | UInt64(peer.port) << 8, peer.bytes.0, peer.bytes.1)
    }

    /// SipHash-2-4 of a 24-byte message given as three little-endian words.
    private func hash(_ m0: UInt64, _ m1: UInt64, _ m2: UInt64) -> UInt64 {
        var v0 = k0 ^ 0x736f_6d65_7073_6575
        var v1 = k1 ^ 0x646f_7261_6e64_6f6d
        var v2 = k0 ^ 0x6c79_6765_6e65_7261
        var v3 = k1 ^ 0x7465_6462_7974_6573
        @inline(__always) func round() {
            v0 &+= v1; v1 = v1.rotl(13); v1 ^= v0; v0 = v0.rotl(32)
            v2 &+= v3; v3 = v3.rotl(16); v3 ^= v2
            v0 &+= v3; v3 = v3.rotl(21); v3 ^= v0
            v2 &+= v1; v1 = v1.rotl(17); v1 ^= v2; v2 = v2.rotl(32)
        }
        @inline(__always) func compress(_ m: UInt64) {
            v3 ^= m
            round()
            round()
            v0 ^= m
        }
        compress(m0)
        compress(m1)
        compress(m2)
        compress(UInt64(24) << 56)
        v2 ^= 0xFF
        for _ in 0..<4 { round() }
        return v0 ^ v1 ^ v2 ^ v3
    }
}

private extension UInt64 {
    @inline(__always) func rotl(_ n: UInt64) -> UInt64 { self << n | self >> (64 - n) }
}
