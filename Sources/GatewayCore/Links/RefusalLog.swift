/// HELLO refusals logged once per change: a link retried every second with the same answer is
/// logged once (the stats line counts every refusal), again when the answer changes, and afresh
/// after it was accepted. Keyed by link position on the access side, by lower node on the aggregation side.
struct RefusalLog {
    private var last: [UInt64: UInt32] = [:]

    /// True when `key` was not last refused with `status`: log it.
    mutating func shouldLog(_ key: UInt64, status: UInt32) -> Bool {
        last.updateValue(status, forKey: key) != status
    }

    /// Accepted: its next refusal is news again.
    mutating func accepted(_ key: UInt64) { last[key] = nil }
}
