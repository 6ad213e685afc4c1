import Histogram

/// What one worker measured; merged into `ClientReport` after its thread is joined.
struct WorkerResult {
    var replies: UInt64 = 0
    /// Reply bytes, headers included.
    var replyBytes: UInt64 = 0
    var errors: UInt64 = 0
    var connectFailures: UInt64 = 0
    /// Connrate: completed connect-echo-close cycles.
    var connections: UInt64 = 0
    /// Idle: connections that answered the first echo, and the second.
    var aliveBefore = 0
    var aliveAfter = 0
    /// The first messages, in order; `errors` and `connectFailures` count them all.
    var messages: [String] = []
    /// Latency in nanoseconds.
    var latency = LatencyHistogram.make()
    var endTime: UInt64 = 0
    /// Push mode: when the window of counted pushes opened (the worker's first push after logging in).
    var windowStart: UInt64?

    static let messageLimit = 20

    mutating func note(_ message: String) {
        if messages.count < Self.messageLimit { messages.append(message) }
    }
}

enum LatencyHistogram {
    /// Nanoseconds up to one hour at three significant digits; longer values are clamped.
    static let highest: UInt64 = 3_600_000_000_000

    static func make() -> Histogram<UInt64> {
        Histogram<UInt64>(lowestDiscernibleValue: 1, highestTrackableValue: highest, numberOfSignificantValueDigits: .three)
    }
}
