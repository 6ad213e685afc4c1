import Glibc

/// Once a second, a line on stderr with the totals so far: rewritten in place on a
/// terminal, plain lines otherwise (logs, pipes).
final class ProgressLine {
    private let settings: ClientSettings
    private let start: UInt64
    private let inPlace = StandardError.isTerminal
    private var lastTime: UInt64
    private var lastReplies: UInt64 = 0
    private var lastBytes: UInt64 = 0
    private var printed = false

    init(settings: ClientSettings, start: UInt64) {
        self.settings = settings
        self.start = start
        lastTime = start
    }

    func update(_ counters: [WorkerCounters], now: UInt64) {
        guard now - lastTime >= 1_000_000_000 else { return }
        let replies = counters.reduce(0) { $0 + $1.replies.load(ordering: .relaxed) }
        let bytes = counters.reduce(0) { $0 + $1.replyBytes.load(ordering: .relaxed) }
        let errors = counters.reduce(0) { $0 + $1.errors.load(ordering: .relaxed) }
        let failures = counters.reduce(0) { $0 + $1.connectFailures.load(ordering: .relaxed) }
        let open = counters.reduce(0) { $0 + $1.open.load(ordering: .relaxed) }
        let seconds = Double(now - lastTime) / 1e9
        let counted = settings.mode == .push ? "deliveries" : "replies"
        var line = "[\(Format.fixed(Double(now - start) / 1e9, 1))s] \(counted) \(replies)"
            + " \(Format.fixed(Double(replies - lastReplies) / seconds, 0))/s"
            + " \(Format.fixed(Double(bytes - lastBytes) / 1e6 / seconds, 1)) MB/s"
        if settings.mode == .connrate {
            let connections = counters.reduce(0) { $0 + $1.connections.load(ordering: .relaxed) }
            line += " connections \(connections)"
        }
        line += " open \(open)/\(settings.conns) errors \(errors) connect_failures \(failures)"
        StandardError.write(inPlace ? "\r\u{1B}[K" + line : line + "\n")
        printed = true
        lastTime = now
        lastReplies = replies
        lastBytes = bytes
    }

    func finish() {
        if inPlace && printed { StandardError.write("\n") }
    }
}
