/// What Deal does with the frames it deals, chosen once at start-up from the configuration. An enum
/// of concrete classes: Deal switches once per connection's turn, and no frame goes through a
/// protocol witness or an existential.
enum DealRole {
    /// No upstream servers: client frames go to the application's handler (HandlerRole.swift).
    case handler(HandlerRole)
    /// An access node with upstream: client frames go up a link as DATA, the core's answers come
    /// down by session id, and the core shapes users, rooms and push (Links/AccessRole.swift).
    case access(AccessRole)
    /// An aggregation server: lower links' messages go up unchanged, what comes down is routed by
    /// the session's node (Links/AggregationRole.swift).
    case aggregation(AggregationRole)
}
