import Synchronization

/// What the master knows of each worker, for its admin endpoint (MasterAdmin) to read: written by the
/// master's main thread, read by the admin thread.
final class WorkerBoard: Sendable {
    struct Status: Sendable, Equatable {
        var pid: Int32?
        /// Started and reported READY; false from its exit until its replacement reports.
        var serving = false
        /// Its own admin endpoint's loopback port, once it reported one.
        var adminPort: Int?
        var restarts = 0
        /// Exits straight after every start (Master.failingAfter quick exits in a row).
        var failing = false
        /// How it last ended ("was killed by signal 9"), if it has.
        var lastExit: String?
    }

    private let statuses: Mutex<[Status]>
    private let drainingFlag = Atomic<Bool>(false)

    init(count: Int) { statuses = Mutex(Array(repeating: Status(), count: count)) }

    var all: [Status] { statuses.withLock { $0 } }

    func update(_ index: Int, _ change: (inout Status) -> Void) {
        statuses.withLock { change(&$0[index]) }
    }

    var draining: Bool { drainingFlag.load(ordering: .sequentiallyConsistent) }

    /// Marks the box draining; false if it already was.
    func beginDrain() -> Bool { !drainingFlag.exchange(true, ordering: .sequentiallyConsistent) }
}
