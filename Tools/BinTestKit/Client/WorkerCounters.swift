import Synchronization

/// A worker's running totals for the progress line. The worker is the only writer and
/// publishes with relaxed stores once per loop turn; the main thread only reads.
final class WorkerCounters: Sendable {
    let replies = Atomic<UInt64>(0)
    let replyBytes = Atomic<UInt64>(0)
    let errors = Atomic<UInt64>(0)
    let connectFailures = Atomic<UInt64>(0)
    let connections = Atomic<UInt64>(0)
    let open = Atomic<Int>(0)
    let finished = Atomic<Bool>(false)
}
