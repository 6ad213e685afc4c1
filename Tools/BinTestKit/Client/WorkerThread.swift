import Glibc

/// A worker on its own pthread: each client thread owns one epoll loop and blocks in
/// epoll_pwait2, which is no job for the cooperative async thread pool.
struct WorkerThread {
    private let thread: pthread_t

    init(running worker: ClientWorker) {
        var thread = pthread_t()
        let context = Unmanaged.passRetained(worker).toOpaque()
        let rc = pthread_create(&thread, nil, { context in
            let worker = Unmanaged<ClientWorker>.fromOpaque(context!).takeRetainedValue()
            worker.run()
            return nil
        }, context)
        precondition(rc == 0, "pthread_create failed: \(rc)")
        self.thread = thread
    }

    func join() { pthread_join(thread, nil) }
}
