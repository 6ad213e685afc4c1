import CLinux

/// A batch of connections on the control socket (docs/HANDOVER.md): a 16-byte header, "GWHB", the
/// count (big-endian UInt32) and the bytes of state that follow (UInt64), sent in one message with
/// the count's descriptors attached (SCM_RIGHTS); then the state, `MovedConnection` records in the
/// descriptors' order. A count of 0 ends the hand-over.
enum BatchWire {
    static let headerSize = 16
    static let magic: [UInt8] = Array("GWHB".utf8)
    /// Most connections in one batch: the descriptors one SCM_RIGHTS message carries.
    static let maxCount = Int(GW_MAX_FDS)
    /// Most bytes of state in one batch.
    static let maxBytes = 1 << 30

    static func header(count: Int, bytes: Int) -> [UInt8] {
        var h = magic
        for shift in stride(from: 24, through: 0, by: -8) { h.append(UInt8(truncatingIfNeeded: count >> shift)) }
        for shift in stride(from: 56, through: 0, by: -8) { h.append(UInt8(truncatingIfNeeded: bytes >> shift)) }
        return h
    }

    /// The count and byte length a header announces, or nil unless it is one within the limits.
    static func parse(header h: [UInt8]) -> (count: Int, bytes: Int)? {
        guard h.count == headerSize, Array(h.prefix(4)) == magic else { return nil }
        let count = h[4..<8].reduce(0) { $0 << 8 | Int($1) }
        let bytes = h[8..<16].reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        guard count <= maxCount, bytes <= UInt64(maxBytes) else { return nil }
        return (count, Int(bytes))
    }
}
