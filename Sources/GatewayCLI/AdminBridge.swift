import GatewayAdmin
import GatewayCore
import Synchronization

/// What the admin endpoint (GatewayAdmin) may ask of a running gateway: its counters, and the
/// same drain and reload a hot restart and SIGHUP start.
final class AdminBridge: AdminControl {
    private let gateway: Gateway
    private let reloads: Reloads
    private let drained = Atomic<Bool>(false)

    init(gateway: Gateway, reloads: Reloads) {
        self.gateway = gateway
        self.reloads = reloads
    }

    func stats() -> GatewayStats { gateway.stats() }
    var roundTrips: RoundTrips { gateway.roundTrips }
    var isDraining: Bool { gateway.isDraining }

    /// POST /drain: as when a new process takes over, without one: stop accepting, ask every client
    /// to reconnect (to the other servers behind the balancer) over drain_timeout, then exit.
    func drain() -> Bool {
        guard !gateway.isDraining, !drained.exchange(true, ordering: .sequentiallyConsistent) else { return false }
        gateway.drainForRestart()
        return true
    }

    func reload() -> ReloadOutcome { reloads.reload() }
}
