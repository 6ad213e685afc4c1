import Foundation

/// What a restart-probe run saw. Times are nanoseconds since the probe started.
struct ProbeCounts {
    var requestsSent: UInt64 = 0
    var replies: UInt64 = 0
    /// Requests never answered: outstanding when their connection closed, failed, or the run ended.
    var lost: UInt64 = 0
    var mismatched: UInt64 = 0
    /// Long-lived connections open again after their first connect.
    var reconnects: UInt64 = 0
    /// PLEASE_RECONNECT frames on long-lived connections, and on short ones.
    var notices: UInt64 = 0
    var shortNotices: UInt64 = 0
    var firstNotice: UInt64?
    var lastNotice: UInt64?
    var noticeMaxMilliseconds: UInt32?
    var noticeMinMilliseconds: UInt32?
    var shortAttempts: UInt64 = 0
    var shortCompleted: UInt64 = 0
    var connectRefused: UInt64 = 0
    var connectFailed: UInt64 = 0
    var connectTimeouts: UInt64 = 0
    var replyTimeouts: UInt64 = 0
    /// Resets and other errors on connections that were open.
    var resets: UInt64 = 0
    var serverCloses: UInt64 = 0
    var longOpenAtStop = 0
    var elapsed: UInt64 = 0
    /// The first faults, in order; the counters count them all.
    var messages: [String] = []

    mutating func note(_ message: String) {
        if messages.count < WorkerResult.messageLimit { messages.append(message) }
    }

    /// One JSON object on one line, keys sorted; the notice figures are null when none came.
    func json(_ settings: RestartProbeSettings) -> String {
        func seconds(_ nanoseconds: UInt64?) -> Any { nanoseconds.map { Double($0) / 1e9 } ?? NSNull() }
        let span = firstNotice.map { lastNotice! - $0 }
        let object: [String: Any] = [
            "host": settings.host,
            "port": settings.port,
            "connections": settings.connections,
            "rate": settings.rate,
            "size": settings.size,
            "duration_s": Double(elapsed) / 1e9,
            "requests_sent": requestsSent,
            "replies_received": replies,
            "lost": lost,
            "mismatched": mismatched,
            "reconnects": reconnects,
            "notices": notices,
            "short_notices": shortNotices,
            "notice_first_s": seconds(firstNotice),
            "notice_last_s": seconds(lastNotice),
            "notice_span_s": seconds(span),
            "notice_max_ms": noticeMaxMilliseconds.map { $0 as Any } ?? NSNull(),
            "notice_min_ms": noticeMinMilliseconds.map { $0 as Any } ?? NSNull(),
            "short_attempts": shortAttempts,
            "short_completed": shortCompleted,
            "connect_refused": connectRefused,
            "connect_failed": connectFailed,
            "connect_timeouts": connectTimeouts,
            "reply_timeouts": replyTimeouts,
            "resets": resets,
            "server_closes": serverCloses,
            "long_open_at_stop": longOpenAtStop,
            "messages": messages,
        ]
        let data = try! JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])
        return String(decoding: data, as: UTF8.self)
    }
}
