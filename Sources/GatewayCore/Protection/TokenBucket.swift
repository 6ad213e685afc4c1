/// The token-bucket rule every rate limit here uses (flood_*_per_s per connection; conn_rate_per_ip
/// and accept_rate at accept): `rate` tokens a second, holding one second's worth at most.
/// A function of plain values, so callers can keep the tokens where they belong (in a slot, written
/// with plain stores; in a dictionary entry) rather than in a shared type with mutating methods.
enum TokenBucket {
    /// `tokens` after `seconds` of refilling at `rate`.
    @inline(__always)
    static func refilled(_ tokens: Double, rate: Double, seconds: Double) -> Double {
        min(rate, tokens + rate * seconds)
    }
}
