import CLinux
import Glibc

/// A joinable pthread with a name (visible in top -H and perf).
public final class OSThread {
    private final class Body {
        let run: () -> Void
        let name: String
        init(_ name: String, _ run: @escaping () -> Void) {
            self.name = name
            self.run = run
        }
    }

    private var handle = pthread_t()

    public init(name: String, _ run: @escaping () -> Void) {
        let body = Unmanaged.passRetained(Body(name, run)).toOpaque()
        let rc = pthread_create(&handle, nil, { raw in
            let body = Unmanaged<Body>.fromOpaque(raw!).takeRetainedValue()
            gw_set_thread_name(String(body.name.prefix(15)))
            body.run()
            return nil
        }, body)
        precondition(rc == 0, "pthread_create failed: \(rc)")
    }

    public func join() {
        pthread_join(handle, nil)
    }
}
