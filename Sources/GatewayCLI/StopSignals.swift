import Glibc

/// SIGINT and SIGTERM, taken synchronously on the main thread: blocked in every
/// thread so that no handler runs at an arbitrary point, then collected by `wait`.
struct StopSignals {
    private var set = sigset_t()

    init() {
        sigemptyset(&set)
        sigaddset(&set, SIGINT)
        sigaddset(&set, SIGTERM)
    }

    /// Call before any other thread starts: threads inherit the mask, and a
    /// thread without it would take the default action and kill the process.
    func block() {
        withUnsafePointer(to: set) { _ = pthread_sigmask(SIG_BLOCK, $0, nil) }
    }

    /// Waits for one of the signals until `timeout` has passed (forever if nil).
    /// Returns the signal number, or nil when the time is up.
    func wait(timeout: Duration?) -> Int32? {
        withUnsafePointer(to: set) { set in
            guard let timeout else {
                var signal: Int32 = 0
                return sigwait(set, &signal) == 0 ? signal : nil
            }
            let (seconds, attoseconds) = max(timeout, .zero).components
            var spec = timespec(tv_sec: Int(seconds), tv_nsec: Int(attoseconds / 1_000_000_000))
            let signal = sigtimedwait(set, nil, &spec)
            // -1 is EAGAIN (time is up) or EINTR; either way the caller re-checks its clock.
            return signal > 0 ? signal : nil
        }
    }

    static func name(_ signal: Int32) -> String {
        signal == SIGINT ? "SIGINT" : "SIGTERM"
    }
}
