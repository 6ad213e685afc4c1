/// flood_frames_per_s and flood_bytes_per_s: two token buckets per connection,
/// each holding one second's worth, refilled by clock ticks and spent by every
/// frame Deal takes off the receive ring. Deal-owned; the tokens live in the slot.
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

    /// Refills the connection's buckets for the ticks since it was last dealt.
    func refill(_ s: UnsafeMutablePointer<ConnectionSlot>, now: UInt64) {
        if !s.pointee.deal.floodArmed {
            s.pointee.deal.floodArmed = true
            (s.pointee.deal.floodFrames, s.pointee.deal.floodBytes, s.pointee.deal.floodTick) = (frames, bytes, now)
            return
        }
        let seconds = Double(now &- s.pointee.deal.floodTick) * secondsPerTick
        guard seconds > 0 else { return }
        s.pointee.deal.floodTick = now
        s.pointee.deal.floodFrames = TokenBucket.refilled(s.pointee.deal.floodFrames, rate: frames, seconds: seconds)
        s.pointee.deal.floodBytes = TokenBucket.refilled(s.pointee.deal.floodBytes, rate: bytes, seconds: seconds)
    }

    /// Spends one frame of `length` bytes; false when either bucket is overdrawn.
    @inline(__always)
    func spend(_ s: UnsafeMutablePointer<ConnectionSlot>, length: Int) -> Bool {
        // Plain stores, not -=: an inout access through `pointee` spans the whole record, which
        // other threads read atomically (ThreadSanitizer reports it).
        s.pointee.deal.floodFrames = s.pointee.deal.floodFrames - 1
        s.pointee.deal.floodBytes = s.pointee.deal.floodBytes - Double(length)
        return (frames == 0 || s.pointee.deal.floodFrames >= 0) && (bytes == 0 || s.pointee.deal.floodBytes >= 0)
    }
}
