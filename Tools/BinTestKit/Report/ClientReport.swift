import Histogram

/// The merged outcome of a client run, and whether it counts as a failure.
public struct ClientReport: Sendable {
    public let settings: ClientSettings
    public var replies: UInt64 = 0
    /// Reply bytes, headers included.
    public var replyBytes: UInt64 = 0
    public var errors: UInt64 = 0
    public var connectFailures: UInt64 = 0
    /// Connrate: completed connect-echo-close cycles.
    public var connections: UInt64 = 0
    public var aliveBefore = 0
    public var aliveAfter = 0
    /// Seconds from the start until the last worker finished; in push mode, the longest window of reading.
    public var elapsed = 0.0
    /// The first fault and connect-failure messages of each worker.
    public var messages: [String] = []
    /// Nanoseconds: request sent (or scheduled, with --rate; connect started, in connrate) to reply read;
    /// in push mode, the core's send stamp to the read.
    public var latency = LatencyHistogram.make()

    init(settings: ClientSettings, start: UInt64, results: [WorkerResult]) {
        self.settings = settings
        var end = start
        var window: UInt64 = 0
        let duration = MonotonicTime.nanoseconds(settings.duration)
        for result in results {
            replies += result.replies
            replyBytes += result.replyBytes
            errors += result.errors
            connectFailures += result.connectFailures
            connections += result.connections
            aliveBefore += result.aliveBefore
            aliveAfter += result.aliveAfter
            messages += result.messages
            latency.add(result.latency)
            end = max(end, result.endTime)
            // The window ends at its deadline (closing the connections after it does not count) or earlier.
            if let opened = result.windowStart { window = max(window, min(result.endTime - opened, duration)) }
        }
        // Pushes count from each worker's first one after logging in: the rate is over that window.
        elapsed = Double(settings.mode == .push ? window : end - start) / 1e9
    }

    public var repliesPerSecond: Double { elapsed > 0 ? Double(replies) / elapsed : 0 }
    public var megabytesPerSecond: Double { elapsed > 0 ? Double(replyBytes) / 1e6 / elapsed : 0 }
    public var connectionsPerSecond: Double { elapsed > 0 ? Double(connections) / elapsed : 0 }

    /// Latency at a percentile (0...100), in microseconds.
    public func latencyMicroseconds(atPercentile percentile: Double) -> Double {
        latency.totalCount == 0 ? 0 : Double(latency.valueAtPercentile(percentile)) / 1000
    }

    public var maxLatencyMicroseconds: Double {
        latency.totalCount == 0 ? 0 : Double(latency.max) / 1000
    }

    /// Why the run failed, beyond the individual fault messages; empty when it did not.
    public var failures: [String] {
        var failures: [String] = []
        if errors > 0 { failures.append("\(errors) errors") }
        if connectFailures > 0 { failures.append("\(connectFailures) connect failures") }
        if replies == 0 { failures.append(settings.mode == .push ? "no push received" : "no reply received") }
        if settings.mode == .idle && aliveAfter < settings.conns {
            failures.append("\(settings.conns - aliveAfter) of \(settings.conns) idle connections did not survive")
        }
        return failures
    }

    /// 0 for a clean run, 1 for any fault.
    public var exitCode: Int32 { failures.isEmpty ? 0 : 1 }
}
