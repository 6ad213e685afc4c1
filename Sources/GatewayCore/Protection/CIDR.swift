import Glibc

/// An IPv4 or IPv6 network: "10.0.0.0/8", "2001:db8::/32", or one address
/// ("127.0.0.1" is /32, "::1" is /128). Used by the allow and deny lists.
public struct CIDR: Hashable, Sendable, CustomStringConvertible {
    public let family: UInt8  // 4 or 6
    public let prefix: Int
    /// The network's address, masked to `prefix`, in network order (IPv4 in the first 4 bytes).
    let bits: Key

    /// 128 bits of address, big-endian halves, for masking and hashing.
    struct Key: Hashable, Sendable {
        var high: UInt64
        var low: UInt64
    }

    /// nil when `text` is not an address with an optional /prefix in range.
    public init?(parsing text: String) {
        // inet_pton reads a C string: a NUL would end the address early and hide what follows.
        guard !text.utf8.contains(0) else { return nil }
        let parts = text.split(separator: "/", maxSplits: 1, omittingEmptySubsequences: false)
        let address = String(parts[0])
        var raw = (UInt64(0), UInt64(0))
        let family: UInt8
        if address.contains(":") {
            guard withUnsafeMutableBytes(of: &raw, { inet_pton(AF_INET6, address, $0.baseAddress) }) == 1 else {
                return nil
            }
            family = 6
        } else {
            guard withUnsafeMutableBytes(of: &raw, { inet_pton(AF_INET, address, $0.baseAddress) }) == 1 else {
                return nil
            }
            family = 4
        }
        let maxPrefix = family == 4 ? 32 : 128
        var prefix = maxPrefix
        if parts.count == 2 {
            guard let p = Int(parts[1]), (0...maxPrefix).contains(p), parts[1].allSatisfy(\.isASCII) else { return nil }
            prefix = p
        }
        self.family = family
        self.prefix = prefix
        bits = CIDR.masked(CIDR.key(raw), prefix: prefix)
    }

    /// Whether `peer` is in this network.
    public func contains(_ peer: PeerAddress) -> Bool {
        peer.family == family && CIDR.masked(CIDR.key(peer.bytes), prefix: prefix) == bits
    }

    public var description: String {
        "\(PeerAddress(family: family, port: 0, bytes: CIDR.raw(bits)).host)/\(prefix)"
    }

    static func key(_ raw: (UInt64, UInt64)) -> Key {
        Key(high: UInt64(bigEndian: raw.0), low: UInt64(bigEndian: raw.1))
    }

    static func raw(_ key: Key) -> (UInt64, UInt64) { (key.high.bigEndian, key.low.bigEndian) }

    /// The first `prefix` bits of `key`; the rest zero.
    static func masked(_ key: Key, prefix: Int) -> Key {
        func mask(_ bits: Int) -> UInt64 { bits <= 0 ? 0 : bits >= 64 ? .max : ~(UInt64.max >> UInt64(bits)) }
        return Key(high: key.high & mask(prefix), low: key.low & mask(prefix - 64))
    }
}
