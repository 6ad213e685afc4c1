import GatewayCore
import Prometheus
import Synchronization

/// The gateway's metrics in the Prometheus text format, computed at each scrape from the engine's
/// snapshot and its round-trip ring: nothing is added to the hot path.
public final class AdminMetrics: Sendable {
    /// Upper bounds of the round-trip histogram: 50 µs to 5 s, about three per decade.
    static let roundTripBuckets: [Duration] = [
        .microseconds(50), .microseconds(100), .microseconds(250), .microseconds(500),
        .milliseconds(1), .microseconds(2500), .milliseconds(5), .milliseconds(10), .milliseconds(25),
        .milliseconds(50), .milliseconds(100), .milliseconds(250), .milliseconds(500),
        .seconds(1), .milliseconds(2500), .seconds(5),
    ]

    private struct CounterSeries: Sendable {
        let counter: Counter
        let value: @Sendable (GatewayStats) -> UInt64
    }

    private struct GaugeSeries: Sendable {
        let gauge: Gauge
        let value: @Sendable (GatewayStats) -> Double
    }

    /// The previous scrape's snapshot and round-trip cursor: the engine gives totals, Prometheus
    /// counters only move by increments, so each scrape adds what changed since the last one.
    private struct Scrape {
        var last = GatewayStats()
        var roundTripCursor: UInt64 = 0
    }

    private let control: any AdminControl
    private let registry: PrometheusCollectorRegistry
    private let counters: [CounterSeries]
    private let gauges: [GaugeSeries]
    private let roundTrips: DurationHistogram
    private let roundTripsLost: Counter
    private let scrape = Mutex(Scrape())

    public init(control: any AdminControl) {
        self.control = control
        let registry = PrometheusCollectorRegistry()
        var counters: [CounterSeries] = []
        var gauges: [GaugeSeries] = []
        func name(_ name: String, _ help: String) -> MetricNameDescriptor {
            MetricNameDescriptor(metricName: name, unitName: "", helpText: help)
        }
        func counter(_ metric: String, _ help: String, _ labels: [(String, String)] = [],
                     _ value: @escaping @Sendable (GatewayStats) -> UInt64) {
            let made = registry.makeCounter(descriptor: name(metric, help), labels: labels)
            counters.append(CounterSeries(counter: made, value: value))
        }
        func gauge(_ metric: String, _ help: String, _ labels: [(String, String)] = [],
                   _ value: @escaping @Sendable (GatewayStats) -> Double) {
            gauges.append(GaugeSeries(gauge: registry.makeGauge(descriptor: name(metric, help), labels: labels),
                                      value: value))
        }

        gauge("gateway_connections_open", "Client connections open.") { Double($0.connectionsOpen) }
        counter("gateway_connections_accepted_total", "Client connections accepted.") { $0.accepted }
        for cause in CloseCause.allCases {
            if cause.isRefusal {
                counter("gateway_refusals_total", "Connections refused at accept, by cause.",
                        [("cause", cause.description)]) { $0.closes(cause) }
            } else {
                counter("gateway_closes_total", "Connections closed after being served, by cause.",
                        [("cause", cause.description)]) { $0.closes(cause) }
            }
        }
        counter("gateway_frames_in_total", "Frames received (clients and links).") { $0.framesIn }
        counter("gateway_frames_out_total", "Frames queued to be sent (clients and links).") { $0.framesOut }
        counter("gateway_bytes_in_total", "Bytes read from sockets (clients and links).") { $0.bytesIn }
        counter("gateway_bytes_out_total", "Bytes written to sockets (clients and links).") { $0.bytesOut }
        counter("gateway_tls_handshakes_total", "TLS handshakes completed.") { $0.tlsHandshakes }
        gauge("gateway_udp_sessions_open", "UDP sessions open (docs/UDP.md).") { Double($0.udp.sessionsOpen) }
        counter("gateway_udp_sessions_total", "UDP sessions opened.") { $0.udp.sessionsOpened }
        counter("gateway_udp_sessions_proven_total", "UDP sessions that echoed their address token.") {
            $0.udp.sessionsProven
        }
        counter("gateway_udp_datagrams_total", "UDP datagrams received and sent.", [("direction", "in")]) {
            $0.udp.datagramsIn
        }
        counter("gateway_udp_datagrams_total", "UDP datagrams received and sent.", [("direction", "out")]) {
            $0.udp.datagramsOut
        }
        counter("gateway_udp_calls_total", "recvmmsg and sendmmsg calls on UDP sockets.", [("call", "recvmmsg")]) {
            $0.udp.receiveCalls
        }
        counter("gateway_udp_calls_total", "recvmmsg and sendmmsg calls on UDP sockets.", [("call", "sendmmsg")]) {
            $0.udp.sendCalls
        }
        counter("gateway_udp_withheld_bytes_total", "Bytes withheld by the 3x anti-amplification bound.") {
            $0.udp.withheldBytes
        }
        for (cause, value) in UDPStats.dropCauses {
            counter("gateway_udp_drops_total", "UDP datagrams dropped, by cause.", [("cause", cause)]) { value($0.udp) }
        }
        counter("gateway_tls_resumed_total", "TLS handshakes that resumed a session from a ticket.") { $0.tlsResumed }
        counter("gateway_tls_own_records_total",
                "TLS 1.3 connections handed from OpenSSL to the gateway's record layer.") {
            $0.tlsOwnRecords
        }
        gauge("gateway_tls_handshaking", "TLS handshakes in progress.") { Double($0.tlsHandshaking) }
        counter("gateway_tls_lock_waits_total", "Times Receive or Send found a TLS connection's lock held.") {
            $0.tlsLockWaits
        }

        let links = "Links to upstream servers: up (HELLO answered), or down (connecting or waiting to retry)."
        gauge("gateway_links", links, [("state", "up")]) { Double($0.linksUp) }
        // Clamped: a miscount must not trap the scrape on UInt64 underflow.
        gauge("gateway_links", links, [("state", "down")]) {
            Double($0.linksConfigured - min($0.linksUp, $0.linksConfigured))
        }
        gauge("gateway_lower_links_up", "Links from lower nodes that are up (aggregation role).") {
            Double($0.downlinksUp)
        }
        counter("gateway_link_closes_total", "Link closes.") { $0.linkCloses }
        counter("gateway_links_refused_total", "HELLOs from lower nodes refused (aggregation role).") {
            $0.linksRefused
        }
        let forwarded = "Client frames sent up as DATA (up), and DATA frames delivered to clients (down)."
        counter("gateway_forwarded_total", forwarded, [("direction", "up")]) { $0.forwardedUp }
        counter("gateway_forwarded_total", forwarded, [("direction", "down")]) { $0.forwardedDown }
        let answered = "Client frames the gateway answered itself, by status."
        counter("gateway_answered_total", answered, [("status", "no_upstream")]) { $0.noUpstreamReplies }
        counter("gateway_answered_total", answered, [("status", "reserved_command")]) {
            $0.reservedCommandReplies
        }
        counter("gateway_answered_total", answered, [("status", "overloaded")]) { $0.overloadedReplies }
        let dropped = "Messages dropped, by reason."
        counter("gateway_dropped_total", dropped, [("reason", "stale")]) { $0.staleDrops }
        counter("gateway_dropped_total", dropped, [("reason", "link_malformed")]) { $0.linkMalformed }
        counter("gateway_dropped_total", dropped, [("reason", "duplicate")]) { $0.duplicates }
        counter("gateway_dropped_total", dropped, [("reason", "too_large")]) { $0.tooLargeDrops }
        counter("gateway_answered_total", answered, [("status", "too_large")]) { $0.tooLargeReplies }
        counter("gateway_upstream_lost_notices_total", "Clients told upstream_lost: their link died.") {
            $0.upstreamLostNotices
        }
        counter("gateway_queue_overflow_closes_total", "Clients closed past max_queued_bytes by a reply.") {
            $0.queueOverflowCloses
        }

        gauge("gateway_sessions_bound", "Sessions bound to a uid.") { Double($0.sessionsBound) }
        gauge("gateway_uids", "Distinct uids bound.") { Double($0.uids) }
        gauge("gateway_rooms", "Rooms with at least one member.") { Double($0.rooms) }
        gauge("gateway_memberships", "Room memberships.") { Double($0.memberships) }
        counter("gateway_joins_refused_total", "JOINs beyond max_rooms_per_session.") { $0.joinsRefused }
        counter("gateway_pushes_total", "PUSH messages applied.") { $0.pushes }
        counter("gateway_push_deliveries_total", "Frames delivered by pushes.") { $0.pushDeliveries }
        counter("gateway_push_nobody_total", "Pushes that reached nobody on this node.") { $0.pushNobody }
        counter("gateway_push_dropped_total", "Push recipients skipped, by reason.", [("reason", "overflow")]) {
            $0.pushDropped
        }
        counter("gateway_push_dropped_total", "Push recipients skipped, by reason.", [("reason", "closing")]) {
            $0.pushDroppedClosing
        }
        counter("gateway_push_drop_notices_total", "PUSH_DROPPED notices sent to the core.") { $0.pushDropNotices }
        counter("gateway_push_overflow_closes_total", "Push recipients closed (push_overflow close).") {
            $0.pushOverflowCloses
        }

        gauge("gateway_pending_bytes", "Bytes held for incomplete frames.") { Double($0.pendingBytes) }
        gauge("gateway_buffered_bytes", "Bytes held by rings, assemblies and read blocks.") {
            Double($0.bufferedBytes)
        }
        gauge("gateway_shedding", "1 while the gateway is not reading clients (past max_buffered_bytes).") {
            $0.shedding ? 1 : 0
        }
        counter("gateway_shedding_spells_total", "Times the gateway began shedding.") { $0.sheddingSpells }
        counter("gateway_reconnect_notices_total", "Please-reconnect frames sent by a drain for a restart.") {
            $0.reconnectNotices
        }
        let handover = "Client connections in a hot restart's hand-over, by outcome."
        counter("gateway_handover_connections_total", handover, [("outcome", "handed_over")]) { $0.handedOver }
        counter("gateway_handover_connections_total", handover, [("outcome", "lost")]) { $0.handoverLost }
        counter("gateway_handover_connections_total", handover, [("outcome", "adopted")]) { $0.handoverAdopted }
        let sessions = "Forwarding sessions in a hot restart's hand-over (MOVE), by outcome."
        counter("gateway_handover_sessions_total", sessions, [("outcome", "moved_out")]) { $0.sessionsMovedOut }
        counter("gateway_handover_sessions_total", sessions, [("outcome", "unanswered")]) { $0.movesUnanswered }
        counter("gateway_handover_sessions_total", sessions, [("outcome", "link_lost")]) { $0.movesLinkLost }
        counter("gateway_handover_sessions_total", sessions, [("outcome", "moved_in")]) { $0.sessionsMovedIn }
        let ring = "Frames queued on every connection's receive rings (for Deal) or send rings (for Send)."
        gauge("gateway_ring_frames", ring, [("direction", "receive")]) { Double($0.receiveRingFrames) }
        gauge("gateway_ring_frames", ring, [("direction", "send")]) { Double($0.sendRingFrames) }
        for (i, stage) in GatewayStats.stageNames.enumerated() {
            gauge("gateway_inbox_depth", "Connection ids waiting in a stage's inbox.", [("stage", stage)]) {
                Double($0.inboxDepths[i])
            }
        }

        roundTrips = registry.makeDurationHistogram(
            descriptor: name("gateway_upstream_rtt_seconds", "Link heartbeat round trips."),
            buckets: Self.roundTripBuckets)
        roundTripsLost = registry.makeCounter(
            descriptor: name("gateway_upstream_rtt_samples_lost_total",
                             "Round-trip samples overwritten before a scrape could read them."))
        self.registry = registry
        self.counters = counters
        self.gauges = gauges
    }

    /// Brings every metric up to the engine's current snapshot and renders the exposition.
    public func render() -> String {
        // Serialised, the snapshot taken inside: two scrapes at once would add the same difference twice.
        scrape.withLock { scrape in
            let stats = control.stats()
            for series in counters {
                let (now, before) = (series.value(stats), series.value(scrape.last))
                if now > before { series.counter.increment(by: Int64(now - before)) }
            }
            scrape.last = stats
            for series in gauges { series.gauge.set(series.value(stats)) }
            let taken = control.roundTrips.read(after: scrape.roundTripCursor)
            scrape.roundTripCursor = taken.next
            record(roundTripNanoseconds: taken.samples)
            if taken.lost > 0 { roundTripsLost.increment(by: Int64(taken.lost)) }
            return registry.emitToString()
        }
    }

    /// Adds round-trip samples (nanoseconds) to the histogram.
    func record(roundTripNanoseconds samples: [UInt64]) {
        for ns in samples { roundTrips.record(.nanoseconds(Int64(clamping: ns))) }
    }
}
