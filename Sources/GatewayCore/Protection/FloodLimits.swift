/// flood_frames_per_s and flood_bytes_per_s: two token buckets per connection,
/// each holding one second's worth, refilled by clock ticks and spent by every
/// frame Deal takes off the receive ring. Deal-owned; the tokens live in the slot's cold part (DealColdPart).
struct FloodLimits {
    let frames: Double
    let bytes: Double
    private let secondsPerTick: Double
    /// Closes for flood since the last log line, and when that line was written.
    var unlogged = 0
    var loggedAt: UInt64 = 0
    let logEveryTicks: UInt64

    init?(framesPerSecond: Int, bytesPerSecond: Int, tickMilliseconds: Int) {
        guard framesPerSecond > 0 || bytesPerSecond > 0 else { return nil }
        frames = Double(framesPerSecond)
        bytes = Double(bytesPerSecond)
        secondsPerTick = Double(tickMilliseconds) / 1000
        logEveryTicks = max(1, 10_000 / UInt64(tickMilliseconds))
    }

    /// Refills the connection's buckets (`c`, its cold part) for the ticks since it was last dealt.
    func refill(_ s: UnsafeMutablePointer<ConnectionSlot>, _ c: UnsafeMutablePointer<DealColdPart>, now: UInt64) {
        if !s.pointee.deal.floodArmed {
            s.pointee.deal.floodArmed = true
            (c.pointee.floodFrames, c.pointee.floodBytes, c.pointee.floodTick) = (frames, bytes, now)
            return
        }
        let seconds = Double(now &- c.pointee.floodTick) * secondsPerTick
        guard seconds > 0 else { return }
        c.pointee.floodTick = now
        c.pointee.floodFrames = TokenBucket.refilled(c.pointee.floodFrames, rate: frames, seconds: seconds)
        c.pointee.floodBytes = TokenBucket.refilled(c.pointee.floodBytes, rate: bytes, seconds: seconds)
    }

    /// Spends one frame of `length` bytes from the buckets in `c`; false when either is overdrawn.
    /// (`-=` is safe here: no other thread reads a cold part.)
    @inline(__always)
    func spend(_ c: UnsafeMutablePointer<DealColdPart>, length: Int) -> Bool {
        c.pointee.floodFrames -= 1
        c.pointee.floodBytes -= Double(length)
        return (frames == 0 || c.pointee.floodFrames >= 0) && (bytes == 0 || c.pointee.floodBytes >= 0)
    }
}
