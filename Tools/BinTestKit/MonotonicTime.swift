import GatewayCore
import Glibc

/// CLOCK_MONOTONIC in nanoseconds: the one clock for send stamps, schedules and deadlines.
enum MonotonicTime {
    @inline(__always)
    static func now() -> UInt64 { MonotonicClock.nanoseconds() }

    static func nanoseconds(_ seconds: Double) -> UInt64 { UInt64((seconds * 1e9).rounded()) }

    static func sleep(nanoseconds: UInt64) {
        var request = timespec(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
        var remaining = timespec()
        while nanosleep(&request, &remaining) != 0 && errno == EINTR { request = remaining }
    }
}
