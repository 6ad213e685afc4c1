import Glibc

/// Runs one client load: spreads the connections over the worker threads, prints
/// progress every second, and merges what the workers measured.
public enum ClientRun {
    public static func run(_ settings: ClientSettings) -> ClientReport {
        FileLimit.raise(toAtLeast: settings.conns + 64)
        let budgets = connectionBudgets(settings)
        let start = MonotonicTime.now()
        let workers = (0..<settings.threads).map { w in
            let connections = Array(stride(from: w, to: settings.conns, by: settings.threads))
            return ClientWorker(settings: settings, connections: connections,
                                budgets: connections.map { budgets[$0] }, startTime: start)
        }
        let threads = workers.map(WorkerThread.init(running:))
        let progress = settings.quiet ? nil : ProgressLine(settings: settings, start: start)
        while !workers.allSatisfy({ $0.counters.finished.load(ordering: .acquiring) }) {
            MonotonicTime.sleep(nanoseconds: 20_000_000)
            progress?.update(workers.map(\.counters), now: MonotonicTime.now())
        }
        threads.forEach { $0.join() }
        progress?.finish()
        return ClientReport(settings: settings, start: start, results: workers.map(\.result))
    }

    /// What each connection may issue (requests, or cycles in connrate) or, in push mode, is owed
    /// (pushes): --count split evenly, unlimited without it; idle mode ignores --count.
    static func connectionBudgets(_ settings: ClientSettings) -> [UInt64] {
        guard let count = settings.count, settings.mode != .idle else {
            return Array(repeating: .max, count: settings.conns)
        }
        let conns = UInt64(settings.conns)
        return (0..<conns).map { c in count / conns + (c < count % conns ? 1 : 0) }
    }
}
