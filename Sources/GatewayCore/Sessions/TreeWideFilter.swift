/// Passes each tree-wide message (docs/LINK.md: PUSH, KICK, PRESENCE_QUERY) on
/// once, whatever number of paths it arrives by: per origin, the highest `seq`
/// seen and a bitmap of the 1,024 below it. Deal-owned.
struct TreeWideFilter {
    static let window: UInt64 = 1024

    private struct Seen {
        var highest: UInt64
        var bits: [UInt64]  // bit (seq % 1024): seen; one array per origin, made once
    }

    private var origins: [UInt32: Seen] = [:]

    /// True when (origin, seq) has not been passed on and is not older than the window.
    func isNew(origin: UInt32, seq: UInt64) -> Bool {
        guard let seen = origins[origin] else { return true }
        if seq > seen.highest { return true }
        if seen.highest - seq >= Self.window { return false }
        return seen.bits[Int(seq % Self.window) >> 6] & (1 << (seq & 63)) == 0
    }

    /// Records (origin, seq) as passed on; the window slides forward with it.
    mutating func mark(origin: UInt32, seq: UInt64) {
        var seen = origins.removeValue(forKey: origin)
            ?? Seen(highest: seq, bits: [UInt64](repeating: 0, count: Int(Self.window / 64)))
        if seq > seen.highest {
            let advance = seq - seen.highest
            if advance >= Self.window {
                for i in seen.bits.indices { seen.bits[i] = 0 }
            } else {
                // The slots of the seqs that slid out of the window are reused for the new ones.
                var s = seen.highest + 1
                while s <= seq {
                    seen.bits[Int(s % Self.window) >> 6] &= ~(1 << (s & 63))
                    s += 1
                }
            }
            seen.highest = seq
        }
        seen.bits[Int(seq % Self.window) >> 6] |= 1 << (seq & 63)
        origins[origin] = seen
    }
}
