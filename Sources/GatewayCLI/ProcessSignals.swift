import Glibc

/// The signals the gateway acts on, taken synchronously on the main thread: blocked in every
/// thread so that no handler runs at an arbitrary point, then collected by `wait`.
/// SIGINT, SIGTERM: graceful stop. SIGHUP: re-read the config file. SIGUSR2: drain for a restart
/// (what a master sends its workers when a new master has taken over). SIGCHLD: a master's worker ended.
struct ProcessSignals {
    private var set = sigset_t()

    init() {
        sigemptyset(&set)
        for signal in [SIGINT, SIGTERM, SIGHUP, SIGUSR2, SIGCHLD] { sigaddset(&set, signal) }
    }

    /// Call before any other thread starts: threads inherit the mask, and a
    /// thread without it would take the default action and kill the process.
    func block() {
        withUnsafePointer(to: set) { _ = pthread_sigmask(SIG_BLOCK, $0, nil) }
    }

    /// A child process starts with these unblocked again (the mask is inherited across exec).
    func unblock() {
        withUnsafePointer(to: set) { _ = pthread_sigmask(SIG_UNBLOCK, $0, nil) }
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
        switch signal {
        case SIGINT: "SIGINT"
        case SIGTERM: "SIGTERM"
        case SIGHUP: "SIGHUP"
        case SIGUSR2: "SIGUSR2"
        case SIGCHLD: "SIGCHLD"
        default: "signal \(signal)"
        }
    }
}
