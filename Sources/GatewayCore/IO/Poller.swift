/// Readiness reported for one registered descriptor.
struct PollEvents: OptionSet {
    let rawValue: UInt8
    static let readable = PollEvents(rawValue: 1)  // data, end of stream, hang-up or error: Receive finds out which
    static let writable = PollEvents(rawValue: 2)
    /// End of stream, hang-up or error came with it: there is more to read than a short read shows.
    static let hangup = PollEvents(rawValue: 4)
}

/// The backend Monitor waits on, as small as Redis's ae_epoll / ae_select:
/// register, unregister, wait, wake, and the stages' interest. Everything above
/// it is the same for both: the trigger mode stays in here.
///
/// A connection is reported readable at least once after each `resumeReading` (and after
/// registration) when bytes or a hang-up are there, and writable at least once after each
/// `wantWritable` when its socket takes bytes. Edge-triggered epoll reports every arrival and
/// every drain by itself, so the interest calls do nothing there; level-triggered poll watches
/// a connection only while it is wanted, so that readiness no stage will act on yet is not
/// reported again and again.
protocol Poller: AnyObject {
    /// Watches a client socket (a token is a packed ConnectionID); its bytes are wanted from the start.
    func addConnection(fd: Int32, token: UInt64) throws(SocketError)
    /// Watches a listening socket (level-triggered, so accepting may stop at a budget).
    func addListener(fd: Int32, token: UInt64) throws(SocketError)
    /// False if `fd` was not registered (errno tells why for epoll).
    @discardableResult
    func remove(fd: Int32) -> Bool

    /// Waits up to `timeoutMs` (-1: forever) for readiness; returns how many
    /// descriptors are ready (0 when a signal interrupted the wait). The caller
    /// blocks here, so it is the only call a QSBR thread makes offline. Throws
    /// when the poller itself is broken (EBADF, EINVAL): no later wait can succeed.
    func wait(timeoutMs: Int32) throws(SocketError) -> Int

    /// Reports each token made ready by the last `wait`. Wake-ups from `wake()`
    /// are absorbed here and not reported.
    func forEachReady(_ report: (UInt64, PollEvents) -> Void)

    /// Interrupts a `wait` in progress, or makes the next one return at once. Any thread.
    func wake()

    /// A stage read the connection dry (EAGAIN): report its next bytes. Any stage thread.
    func resumeReading(_ token: UInt64)
    /// A stage found the connection's socket full: report when it takes bytes again. Any stage thread.
    func wantWritable(_ token: UInt64)
    /// The calling stage's batch is done: the interest it changed takes effect (poll: the waiting
    /// Monitor is woken once for the batch, not once per connection).
    func applyInterest()
}
