import GatewayCore

/// What the admin endpoint asks of the running gateway (implemented by the CLI's runner).
public protocol AdminControl: AnyObject, Sendable {
    /// The engine's snapshot: counters (totals since start) and levels.
    func stats() -> GatewayStats
    /// Link heartbeat round trips, in nanoseconds.
    var roundTrips: RoundTrips { get }
    var isDraining: Bool { get }
    /// Begins draining; false if it already was.
    func drain() -> Bool
    /// Re-reads the config file.
    func reload() -> ReloadOutcome
}

/// What a reload did.
public enum ReloadOutcome: Sendable, Equatable {
    /// Keys (snake_case, as in the file) now in force, and keys whose new value waits for a restart.
    case applied(changed: [String], needRestart: [String])
    /// Nothing applied; why, naming the key and its allowed range.
    case rejected(String)
}

/// What the admin routes answer with (docs/ADMIN.md): one gateway's (`GatewayAdminService`), or a master's
/// for all its workers.
public protocol AdminService: AnyObject, Sendable {
    /// The Prometheus text exposition.
    func metrics() -> String
    /// Whether a balancer should send traffic here, and the one-line reason.
    func health() -> (serving: Bool, reason: String)
    /// The JSON object of GET /stats.
    func statsObject() -> [String: Any]
    /// Begins draining; false if it already was.
    func drain() -> Bool
    /// Re-reads the config file.
    func reload() -> ReloadOutcome
}

/// One gateway's admin answers, from its engine (`AdminControl`).
public final class GatewayAdminService: AdminService {
    private let control: any AdminControl
    private let exposition: AdminMetrics

    public init(control: any AdminControl) {
        self.control = control
        exposition = AdminMetrics(control: control)
    }

    public func metrics() -> String { exposition.render() }
    public func health() -> (serving: Bool, reason: String) {
        control.isDraining ? (false, "draining") : (true, "serving")
    }
    public func statsObject() -> [String: Any] { AdminStats.object(control.stats()) }
    public func drain() -> Bool { control.drain() }
    public func reload() -> ReloadOutcome { control.reload() }
}
