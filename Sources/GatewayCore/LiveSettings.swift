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
    var maxRoomsPerSession: Int
    var floodFramesPerSecond: Int
    var floodBytesPerSecond: Int
    /// Monitor's.
    var drainTimeout: Int

    /// The keys of GatewayConfig that apply live (the allow/deny lists and per-address limits too,
    /// which `Engine.reconfigure` swaps itself).
    static let keys = ["idle_timeout", "frame_timeout", "proxy_timeout", "max_pending_bytes", "max_buffered_bytes",
                       "write_stall_timeout", "max_queue_wait", "push_overflow", "max_rooms_per_session",
                       "flood_frames_per_s", "flood_bytes_per_s", "drain_timeout", "allow", "deny",
                       "max_conns_per_ip", "conn_rate_per_ip", "accept_rate"]

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
        maxRoomsPerSession = config.maxRoomsPerSession
        floodFramesPerSecond = config.floodFramesPerSecond
        floodBytesPerSecond = config.floodBytesPerSecond
        drainTimeout = config.drainTimeout
    }
}

/// The latest LiveSettings, published by a reload (any thread) and taken by each owning thread
/// when the version moved: one relaxed load per tick when nothing changed.
final class PublishedSettings: @unchecked Sendable {  // `value` is read and written under `lock`
    private let lock = SpinLock()
    private var value: LiveSettings
    private let version = ManagedAtomic<UInt64>(0)

    init(_ value: LiveSettings) { self.value = value }

    func publish(_ new: LiveSettings) {
        lock.withLock { value = new }
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
}
