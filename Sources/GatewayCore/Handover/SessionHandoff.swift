import Atomics

/// Moved sessions passed between two threads, by connection id: in the old process Deal leaves a
/// session here as it passes its connection on (its rooms live in Deal's directory) and the exporter
/// takes it; in the new process Monitor leaves one at adoption and Deal takes it on the client's
/// first turn. An empty table costs one atomic load.
final class SessionHandoff: @unchecked Sendable {  // the dictionary under its lock
    private let lock = SpinLock()
    private var sessions: [UInt64: MovedSession] = [:]
    private let count = ManagedAtomic<Int>(0)

    func put(_ id: ConnectionID, _ session: MovedSession) {
        let added = lock.withLock { sessions.updateValue(session, forKey: id.packed) == nil }
        if added { count.wrappingIncrement(ordering: .releasing) }
    }

    func take(_ id: ConnectionID) -> MovedSession? {
        guard count.load(ordering: .acquiring) > 0 else { return nil }
        let taken = lock.withLock { sessions.removeValue(forKey: id.packed) }
        if taken != nil { count.wrappingDecrement(ordering: .releasing) }
        return taken
    }
}
