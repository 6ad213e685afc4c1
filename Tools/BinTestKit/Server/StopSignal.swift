import Glibc

/// SIGINT and SIGTERM for the server modes: blocked before the engine starts its
/// threads (which inherit the mask), so they wait for `wait()` instead of killing the process.
struct StopSignal {
    private var signals = sigset_t()

    /// Blocks both signals in the calling thread and the threads it starts from now on.
    static func block() -> StopSignal {
        var s = StopSignal()
        sigemptyset(&s.signals)
        sigaddset(&s.signals, SIGINT)
        sigaddset(&s.signals, SIGTERM)
        pthread_sigmask(SIG_BLOCK, &s.signals, nil)
        return s
    }

    /// Returns the signal that arrived.
    func wait() -> Int32 {
        var copy = signals
        var received: Int32 = 0
        sigwait(&copy, &received)
        return received
    }
}
