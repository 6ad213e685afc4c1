import Foundation

extension ClientReport {
    /// The summary as one JSON object on one line (keys sorted). In push mode `replies` and
    /// `replies_per_s` are the pushes delivered in the window, `size` the push body.
    public var json: String {
        var object: [String: Any] = [
            "mode": settings.mode.rawValue,
            "host": settings.host,
            "port": settings.port,
            "conns": settings.conns,
            "threads": settings.threads,
            "pipeline": settings.inFlightCap,
            "size": settings.mode == .push ? settings.pushSize : settings.size,
            "duration_s": elapsed,
            "replies": replies,
            "reply_bytes": replyBytes,
            "replies_per_s": repliesPerSecond,
            "mb_per_s": megabytesPerSecond,
            "latency_us": [
                "p50": latencyMicroseconds(atPercentile: 50),
                "p90": latencyMicroseconds(atPercentile: 90),
                "p99": latencyMicroseconds(atPercentile: 99),
                "p999": latencyMicroseconds(atPercentile: 99.9),
                "max": maxLatencyMicroseconds,
            ],
            "errors": errors,
            "connect_failures": connectFailures,
            "error_messages": messages,
            "ok": failures.isEmpty,
            "rate": settings.rate.map { $0 as Any } ?? NSNull(),
            "count": settings.count.map { $0 as Any } ?? NSNull(),
        ]
        switch settings.mode {
        case .connrate:
            object["connections"] = connections
            object["connections_per_s"] = connectionsPerSecond
        case .idle:
            object["alive_before"] = aliveBefore
            object["alive_after"] = aliveAfter
        case .push:
            object["push_uids"] = settings.pushUids
            object["push_scope"] = settings.pushScope.rawValue
            object["push_size"] = settings.pushSize
        case .load, .pingpong:
            break
        }
        let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }
}
