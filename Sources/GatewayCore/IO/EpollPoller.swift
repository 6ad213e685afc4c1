import CLinux
import Glibc

/// epoll, edge-triggered for connections: one registration per connection for
/// its whole life, and Receive reads until the socket is drained.
final class EpollPoller: Poller {
    private static let wakeToken = UInt64.max
    private let epfd: Int32
    private let wakeFd: Int32
    private let events: UnsafeMutablePointer<epoll_event>
    private let capacity: Int32
    private var ready = 0

    init(maxEvents: Int32 = 1024) throws(SocketError) {
        epfd = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard epfd >= 0 else { throw SocketError("epoll_create1", gw_errno()) }
        wakeFd = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        guard wakeFd >= 0 else { close(epfd); throw SocketError("eventfd", gw_errno()) }
        capacity = maxEvents
        events = .allocate(capacity: Int(maxEvents))
        try control(EPOLL_CTL_ADD, wakeFd, EPOLLIN.rawValue, EpollPoller.wakeToken)
    }

    deinit {
        close(wakeFd)
        close(epfd)
        events.deallocate()
    }

    func addConnection(fd: Int32, token: UInt64) throws(SocketError) {
        let mask = EPOLLIN.rawValue | EPOLLOUT.rawValue | EPOLLRDHUP.rawValue | EPOLLET.rawValue
        try control(EPOLL_CTL_ADD, fd, mask, token)
    }

    /// Exclusive: workers (and a process handing over) share one listener, and a new connection
    /// wakes one of their pollers, not all of them.
    func addListener(fd: Int32, token: UInt64) throws(SocketError) {
        try control(EPOLL_CTL_ADD, fd, EPOLLIN.rawValue | EPOLLEXCLUSIVE.rawValue, token)
    }

    @discardableResult
    func remove(fd: Int32) -> Bool {
        var ev = epoll_event()
        return epoll_ctl(epfd, EPOLL_CTL_DEL, fd, &ev) == 0
    }

    func wait(timeoutMs: Int32) throws(SocketError) -> Int {
        let n = epoll_wait(epfd, events, capacity, timeoutMs)
        if n < 0 {
            let e = gw_errno()
            guard e == EINTR else { throw SocketError("epoll_wait", e) }
        }
        ready = Int(max(0, n))
        return ready
    }

    func forEachReady(_ report: (UInt64, PollEvents) -> Void) {
        let n = ready
        ready = 0
        let readMask = EPOLLIN.rawValue | EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue
        for i in 0..<n {
            let ev = events[i]
            let token = ev.data.u64
            if token == EpollPoller.wakeToken {
                var value: UInt64 = 0
                _ = read(wakeFd, &value, 8)
                continue
            }
            var ready: PollEvents = []
            if ev.events & readMask != 0 { ready.insert(.readable) }
            if ev.events & EPOLLOUT.rawValue != 0 { ready.insert(.writable) }
            if ev.events & (EPOLLRDHUP.rawValue | EPOLLHUP.rawValue | EPOLLERR.rawValue) != 0 { ready.insert(.hangup) }
            report(token, ready)
        }
    }

    func wake() {
        var one: UInt64 = 1
        _ = write(wakeFd, &one, 8)
    }

    // Edge-triggered: a new arrival, or a drain of the send buffer, raises an event by itself.
    func resumeReading(_ token: UInt64) {}
    func wantWritable(_ token: UInt64) {}
    func applyInterest() {}

    private func control(_ op: Int32, _ fd: Int32, _ mask: UInt32, _ token: UInt64) throws(SocketError) {
        var ev = epoll_event()
        ev.events = mask
        ev.data.u64 = token
        guard epoll_ctl(epfd, op, fd, &ev) == 0 else { throw SocketError("epoll_ctl", gw_errno()) }
    }
}
