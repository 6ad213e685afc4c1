extension ClientReport {
    /// The summary for people.
    public var text: String {
        let s = settings
        let rate = s.rate.map { ", rate \(Format.fixed($0, 0))/s" } ?? ""
        let shape = s.mode == .push
            ? ", uids \(s.pushUids), scope \(s.pushScope.rawValue), push size \(s.pushSize) B"
            : ", pipeline \(s.inFlightCap), size \(s.size) B" + rate
        let counted = s.mode == .push ? "deliveries      " : "replies         "
        var lines = [
            "bin_test \(s.mode.rawValue) \(s.host):\(s.port): conns \(s.conns), threads \(s.threads)" + shape
                + ", \(Format.fixed(elapsed, 2)) s",
            "\(counted) \(replies) (\(Format.fixed(repliesPerSecond, 0))/s"
                + ", \(Format.fixed(megabytesPerSecond, 2)) MB/s)",
            "latency us       p50 \(Format.fixed(latencyMicroseconds(atPercentile: 50), 1))"
                + "  p90 \(Format.fixed(latencyMicroseconds(atPercentile: 90), 1))"
                + "  p99 \(Format.fixed(latencyMicroseconds(atPercentile: 99), 1))"
                + "  p99.9 \(Format.fixed(latencyMicroseconds(atPercentile: 99.9), 1))"
                + "  max \(Format.fixed(maxLatencyMicroseconds, 1))",
        ]
        switch s.mode {
        case .connrate:
            lines.append("connections      \(connections) (\(Format.fixed(connectionsPerSecond, 0))/s)")
        case .idle:
            lines.append("alive            \(aliveBefore) before the hold, \(aliveAfter) after")
        case .load, .pingpong, .push:
            break
        }
        lines.append("connect failures \(connectFailures)")
        lines.append("errors           \(errors)")
        let failures = failures
        lines.append(failures.isEmpty ? "result           OK" : "result           FAILED: " + failures.joined(separator: ", "))
        return lines.joined(separator: "\n")
    }
}
