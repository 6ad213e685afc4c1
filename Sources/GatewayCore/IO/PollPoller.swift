import CLinux
import Glibc

/// poll(2), for the aggregation tier's few busy connections. Level-triggered:
/// a connection is polled for reading only while Receive wants more (its
/// `interest` says so), and for writing only while its socket is full.
final class PollPoller: Poller {
    /// The events wanted for a connection token right now.
    typealias Interest = (UInt64) -> Int16

    private let wakeFd: Int32
    private let interest: Interest
    private var fds: [pollfd] = []
    /// The descriptors themselves: `fds[i].fd` is -1 while nothing is wanted from one,
    /// so that a hang-up nobody is ready to handle does not make poll spin.
    private var realFds: [Int32] = []
    private var tokens: [UInt64] = []
    private var ready = 0
    private var isListener: [Bool] = []
    /// Position in `fds` of each registered descriptor, indexed by descriptor number.
    private var position: [Int32] = []

    var edgeTriggered: Bool { false }

    init(interest: @escaping Interest) throws(SocketError) {
        wakeFd = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        guard wakeFd >= 0 else { throw SocketError("eventfd", gw_errno()) }
        self.interest = interest
        register(fd: wakeFd, token: 0, listener: true)
    }

    deinit { close(wakeFd) }

    func addConnection(fd: Int32, token: UInt64) throws(SocketError) {
        register(fd: fd, token: token, listener: false)
    }

    func addListener(fd: Int32, token: UInt64) throws(SocketError) {
        register(fd: fd, token: token, listener: true)
    }

    @discardableResult
    func remove(fd: Int32) -> Bool {
        guard Int(fd) < position.count, position[Int(fd)] >= 0 else { return false }
        let at = Int(position[Int(fd)])
        let last = fds.count - 1
        if at != last {
            fds[at] = fds[last]
            realFds[at] = realFds[last]
            tokens[at] = tokens[last]
            isListener[at] = isListener[last]
            position[Int(realFds[at])] = Int32(at)
        }
        fds.removeLast()
        realFds.removeLast()
        tokens.removeLast()
        isListener.removeLast()
        position[Int(fd)] = -1
        return true
    }

    func wait(timeoutMs: Int32) throws(SocketError) -> Int {
        for i in 1..<fds.count where !isListener[i] {
            let wanted = interest(tokens[i])
            fds[i].events = wanted
            fds[i].fd = wanted == 0 ? -1 : realFds[i]
        }
        let n = fds.withUnsafeMutableBufferPointer { poll($0.baseAddress, nfds_t($0.count), timeoutMs) }
        if n < 0 {
            let e = gw_errno()
            guard e == EINTR else { throw SocketError("poll", e) }
        }
        ready = Int(max(0, n))
        return ready
    }

    func forEachReady(_ report: (UInt64, PollEvents) -> Void) {
        guard ready > 0 else { return }
        ready = 0
        if fds[0].revents != 0 {
            var value: UInt64 = 0
            _ = read(wakeFd, &value, 8)
        }
        // POLLNVAL: the descriptor was closed while registered. Reported as an error on that
        // connection, so that its read fails and it is closed, rather than polled again at once forever.
        let errorMask = Int16(POLLHUP | POLLERR | POLLNVAL) | GW_POLLRDHUP
        let readMask = Int16(POLLIN) | errorMask
        // `report` may remove descriptors (a failed connect), which moves the last entry into
        // the hole: the count is read each time, and a skipped entry is reported by the next poll.
        var i = 1
        while i < fds.count {
            let revents = fds[i].revents
            fds[i].revents = 0
            var ready: PollEvents = []
            if revents & readMask != 0 { ready.insert(.readable) }
            if revents & Int16(POLLOUT) != 0 { ready.insert(.writable) }
            if revents & errorMask != 0 { ready.insert(.hangup) }
            if !ready.isEmpty { report(tokens[i], ready) }
            i += 1
        }
    }

    func wake() {
        var one: UInt64 = 1
        _ = write(wakeFd, &one, 8)
    }

    private func register(fd: Int32, token: UInt64, listener: Bool) {
        if Int(fd) >= position.count {
            position.append(contentsOf: repeatElement(-1, count: Int(fd) + 1 - position.count + 64))
        }
        position[Int(fd)] = Int32(fds.count)
        fds.append(pollfd(fd: fd, events: Int16(POLLIN), revents: 0))
        realFds.append(fd)
        tokens.append(token)
        isListener.append(listener)
    }
}
