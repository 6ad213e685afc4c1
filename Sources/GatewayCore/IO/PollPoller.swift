import Atomics
import CLinux
import Glibc

/// poll(2), for the aggregation tier's few busy connections. Level-triggered:
/// a connection is polled for reading from a stage's `resumeReading` until it is
/// reported readable, and for writing from `wantWritable` until it is reported writable.
final class PollPoller: Poller {
    private let wakeFd: Int32
    /// Per connection, by its id's index: 1 while its readability (its writability) is wanted.
    /// Stages set them; Monitor reads them at each wait and takes them when it reports.
    private let readWanted: UnsafeMutablePointer<UInt8.AtomicRepresentation>
    private let writeWanted: UnsafeMutablePointer<UInt8.AtomicRepresentation>
    private let connections: Int
    /// A stage changed interest since Monitor last looked: `applyInterest` wakes it.
    private let interestChanged = UnsafeAtomic<Bool>.create(false)
    private var fds: [pollfd] = []
    /// The descriptors themselves: `fds[i].fd` is -1 while nothing is wanted from one,
    /// so that a hang-up nobody is ready to handle does not make poll spin.
    private var realFds: [Int32] = []
    private var tokens: [UInt64] = []
    private var ready = 0
    private var isListener: [Bool] = []
    /// Position in `fds` of each registered descriptor, indexed by descriptor number.
    private var position: [Int32] = []

    /// `connections`: above the highest connection index a token will carry.
    init(connections: Int) throws(SocketError) {
        wakeFd = eventfd(0, Int32(EFD_NONBLOCK | EFD_CLOEXEC))
        guard wakeFd >= 0 else { throw SocketError("eventfd", gw_errno()) }
        self.connections = connections
        readWanted = .allocate(capacity: connections)
        readWanted.initialize(repeating: UInt8.AtomicRepresentation(0), count: connections)
        writeWanted = .allocate(capacity: connections)
        writeWanted.initialize(repeating: UInt8.AtomicRepresentation(0), count: connections)
        register(fd: wakeFd, token: 0, listener: true)
    }

    deinit {
        close(wakeFd)
        readWanted.deallocate()
        writeWanted.deallocate()
        interestChanged.destroy()
    }

    func addConnection(fd: Int32, token: UInt64) throws(SocketError) {
        let index = Self.index(token)
        precondition(index < connections, "connection index \(index) beyond the poller's \(connections)")
        UnsafeAtomic<UInt8>(at: readWanted + index).store(1, ordering: .relaxed)
        UnsafeAtomic<UInt8>(at: writeWanted + index).store(0, ordering: .relaxed)
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
        // Taken (not just cleared) so that every want set before a stage's true is seen below.
        _ = interestChanged.exchange(false, ordering: .acquiringAndReleasing)
        for i in 1..<fds.count where !isListener[i] {
            let index = Self.index(tokens[i])
            var wanted: Int16 = 0
            if UnsafeAtomic<UInt8>(at: readWanted + index).load(ordering: .acquiring) == 1 { wanted |= Int16(POLLIN) | GW_POLLRDHUP }
            if UnsafeAtomic<UInt8>(at: writeWanted + index).load(ordering: .acquiring) == 1 { wanted |= Int16(POLLOUT) }
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
            if revents != 0, !isListener[i] {
                // Reported once per want: the stage that acts on it asks again when it needs to.
                let index = Self.index(tokens[i])
                if revents & readMask != 0, take(readWanted + index) {
                    ready.insert(.readable)
                    if revents & errorMask != 0 { ready.insert(.hangup) }
                }
                if revents & Int16(POLLOUT) != 0, take(writeWanted + index) { ready.insert(.writable) }
            } else if revents & readMask != 0 {
                ready.insert(.readable)
            }
            if !ready.isEmpty { report(tokens[i], ready) }
            i += 1
        }
    }

    func wake() {
        var one: UInt64 = 1
        _ = write(wakeFd, &one, 8)
    }

    func resumeReading(_ token: UInt64) {
        UnsafeAtomic<UInt8>(at: readWanted + Self.index(token)).store(1, ordering: .releasing)
        interestChanged.store(true, ordering: .releasing)
    }

    func wantWritable(_ token: UInt64) {
        UnsafeAtomic<UInt8>(at: writeWanted + Self.index(token)).store(1, ordering: .releasing)
        interestChanged.store(true, ordering: .releasing)
    }

    func applyInterest() {
        guard interestChanged.load(ordering: .relaxed), interestChanged.exchange(false, ordering: .acquiring) else {
            return
        }
        wake()
    }

    @inline(__always)
    private static func index(_ token: UInt64) -> Int { Int(ConnectionID(packed: token).index) }

    @inline(__always)
    private func take(_ wanted: UnsafeMutablePointer<UInt8.AtomicRepresentation>) -> Bool {
        UnsafeAtomic<UInt8>(at: wanted).exchange(0, ordering: .acquiringAndReleasing) == 1
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
