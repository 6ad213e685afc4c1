import Glibc
import CLinux

/// epoll_wait with a nanosecond timeout. epoll_wait counts milliseconds, which would make
/// open-loop sends up to a millisecond late; a shorter wait goes through select() on the
/// epoll descriptor (readable when events are ready), which takes microseconds.
/// (epoll_pwait2 would do, but needs _GNU_SOURCE, which the CLinux module does not define.)
struct EventWait {
    let epoll: Int32

    func wait(_ events: UnsafeMutablePointer<epoll_event>, capacity: Int32, nanoseconds: UInt64) -> Int {
        let milliseconds = nanoseconds / 1_000_000
        let count: Int32
        if nanoseconds == 0 {
            count = epoll_wait(epoll, events, capacity, 0)
        } else if milliseconds > 0 {
            // Waking a little early is fine: the caller loops and waits out the rest.
            count = epoll_wait(epoll, events, capacity, Int32(min(milliseconds, 60_000)))
        } else if epoll < FD_SETSIZE {
            var readable = fd_set()
            withUnsafeMutableBytes(of: &readable) { bits in
                bits.storeBytes(of: 1 << UInt64(epoll % 64), toByteOffset: Int(epoll / 64) * 8, as: UInt64.self)
            }
            var timeout = timeval(tv_sec: 0, tv_usec: Int(max(nanoseconds / 1000, 1)))
            _ = select(epoll + 1, &readable, nil, nil, &timeout)
            count = epoll_wait(epoll, events, capacity, 0)
        } else {
            count = epoll_wait(epoll, events, capacity, 1)
        }
        return max(Int(count), 0)
    }
}
