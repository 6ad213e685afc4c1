/// What the client does on each connection.
public enum ClientMode: String, CaseIterable, Sendable {
    /// Closed loop: `pipeline` requests in flight on every connection.
    case load
    /// One request in flight on each connection (default one connection).
    case pingpong
    /// Connect, one echo, close, again, as fast as possible: connections per second.
    case connrate
    /// Open connections, prove each live, hold them idle, prove each still live.
    case idle
    /// Log in (the core binds a uid), then only read the pushes of `bin_test core --push-rate`.
    case push
}
