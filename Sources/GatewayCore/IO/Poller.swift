/// Readiness reported for one registered descriptor.
struct PollEvents: OptionSet {
    let rawValue: UInt8
    static let readable = PollEvents(rawValue: 1)  // data, end of stream, hang-up or error: Receive finds out which
    static let writable = PollEvents(rawValue: 2)
    /// End of stream, hang-up or error came with it: there is more to read than a short read shows.
    static let hangup = PollEvents(rawValue: 4)
}

/// The backend Monitor waits on, as small as Redis's ae_epoll / ae_select:
/// register, unregister, wait, wake. Everything above it is the same for both.
protocol Poller: AnyObject {
    /// Edge-triggered backends report each new arrival once and need no re-arming;
    /// level-triggered ones are told when a stage wants readiness again.
    var edgeTriggered: Bool { get }

    /// Watches a client socket for reading and writing.
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
}
