import Atomics

/// The settings a reload may change while the gateway runs, in the units the threads use.
/// Each owning thread takes a new version at its next tick: timers already set keep their old
/// length, the ones set after use the new one. Everything else in GatewayConfig needs a restart.
struct LiveSettings {
    /// Receive's.
    var idleTicks: UInt64
    var frameTicks: UInt64
    var proxyTicks: UInt64
    var maxPendingBytes: Int
    var maxBufferedBytes: Int
    /// Send's.
    var stallTicks: UInt64
    /// Deal's.
    var maxWaitTicks: UInt64
    var pushOverflow: PushOverflow
    var maxQueuedBytes: Int
    var maxRoomsPerSession: Int
    var floodFramesPerSecond: Int
    var floodBytesPerSecond: Int
    /// Monitor's.
    var drainTimeout: Int
    /// The outbound links by position (the link number in HELLO): the server each one goes to, or nil
    /// for a position whose server a reload removed. Positions are never reused, so Deal and Monitor
    /// agree on them without talking; a reload appends `upstream_links` positions per new server.
    var linkTargets: [GatewayConfig.Upstream?]

    /// The keys of GatewayConfig that apply live (the allow/deny lists and per-address limits too,
    /// which `Engine.reconfigure` swaps itself).
    static let keys = ["idle_timeout", "frame_timeout", "proxy_timeout", "max_pending_bytes", "max_buffered_bytes",
                       "write_stall_timeout", "max_queue_wait", "push_overflow", "max_queued_bytes", "max_rooms_per_session",
                       "flood_frames_per_s", "flood_bytes_per_s", "drain_timeout", "allow", "deny",
                       "max_conns_per_ip", "conn_rate_per_ip", "accept_rate", "upstream"]

    /// Link positions are u16 link numbers.
    static let maxLinkPositions = Int(UInt16.max)

    init(_ config: GatewayConfig) {
        let tick = UInt64(config.tickMilliseconds)
        func ticks(seconds: Int) -> UInt64 { (UInt64(seconds) * 1000 + tick - 1) / tick }
        idleTicks = ticks(seconds: config.idleTimeout)
        frameTicks = ticks(seconds: config.frameTimeout)
        proxyTicks = ticks(seconds: config.proxyTimeout)
        maxPendingBytes = config.maxPendingBytes
        maxBufferedBytes = config.maxBufferedBytes
        stallTicks = max(1, ticks(seconds: config.writeStallTimeout))
        // max_queue_wait sheds clients' frames; lower links' traffic is never answered by the aggregation tier.
        maxWaitTicks = config.role == .access ? (UInt64(config.maxQueueWait) + tick - 1) / tick : 0
        pushOverflow = config.pushOverflow
        maxQueuedBytes = config.queueBound
        maxRoomsPerSession = config.maxRoomsPerSession
        floodFramesPerSecond = config.floodFramesPerSecond
        floodBytesPerSecond = config.floodBytesPerSecond
        drainTimeout = config.drainTimeout
        linkTargets = config.upstream.flatMap { Array(repeating: $0, count: config.upstreamLinks) }
    }

    /// A reload's settings, keeping the positions of links to servers still listed.
    init(_ config: GatewayConfig, after old: LiveSettings) throws(ConfigError) {
        self.init(config)
        var targets = old.linkTargets.map { target in target.flatMap { config.upstream.contains($0) ? $0 : nil } }
        for server in config.upstream where !targets.contains(server) {
            targets += Array(repeating: server, count: config.upstreamLinks)
        }
        guard targets.count <= Self.maxLinkPositions else {
            throw ConfigError(key: "upstream", value: config.upstream.map(\.description).joined(separator: ","),
                              allowed: "at most \(Self.maxLinkPositions) link positions since start; restart to reset")
        }
        linkTargets = targets
    }
}

/// The latest LiveSettings, published by a reload (any thread) and taken by each owning thread
/// when the version moved: one relaxed load per tick when nothing changed.
final class PublishedSettings: @unchecked Sendable {  // `value` is read and written under `lock`
    private let lock = SpinLock()
    private var value: LiveSettings
    private let version = ManagedAtomic<UInt64>(0)

    init(_ value: LiveSettings) { self.value = value }

    /// Builds the next settings from the current ones and publishes them; one reload at a time.
    func publish(_ make: (LiveSettings) throws(ConfigError) -> LiveSettings) throws(ConfigError) {
        lock.lock()
        defer { lock.unlock() }
        value = try make(value)
        version.wrappingIncrement(ordering: .releasing)
    }

    /// The settings, if they changed since `seen` (which is updated).
    func newer(than seen: inout UInt64) -> LiveSettings? {
        let now = version.load(ordering: .acquiring)
        guard now != seen else { return nil }
        seen = now
        return lock.withLock { value }
    }

    var current: LiveSettings { lock.withLock { value } }
    var currentVersion: UInt64 { version.load(ordering: .acquiring) }
}
