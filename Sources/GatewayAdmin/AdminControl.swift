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
