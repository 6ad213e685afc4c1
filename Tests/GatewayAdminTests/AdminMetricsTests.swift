import Foundation
import GatewayCore
import Logging
import XCTest
@testable import GatewayAdmin

/// The exposition's samples keyed by name and labels as written (`name{label="value"}`).
func samples(_ exposition: String) -> [String: Double] {
    var out: [String: Double] = [:]
    for line in exposition.split(separator: "\n") where !line.hasPrefix("#") {
        guard let space = line.lastIndex(of: " ") else { continue }
        out[String(line[..<space])] = Double(line[line.index(after: space)...])
    }
    return out
}

/// Each metric family's type, from its `# TYPE` line.
func types(_ exposition: String) -> [String: String] {
    var out: [String: String] = [:]
    for line in exposition.split(separator: "\n") where line.hasPrefix("# TYPE ") {
        let parts = line.split(separator: " ")
        out[String(parts[2])] = String(parts[3])
    }
    return out
}

final class AdminMetricsTests: XCTestCase {
    static let families = [
        "gateway_connections_open": "gauge", "gateway_connections_accepted_total": "counter",
        "gateway_closes_total": "counter", "gateway_refusals_total": "counter",
        "gateway_frames_in_total": "counter", "gateway_frames_out_total": "counter",
        "gateway_bytes_in_total": "counter", "gateway_bytes_out_total": "counter",
        "gateway_links": "gauge", "gateway_lower_links_up": "gauge", "gateway_link_closes_total": "counter",
        "gateway_links_refused_total": "counter", "gateway_forwarded_total": "counter",
        "gateway_answered_total": "counter", "gateway_dropped_total": "counter",
        "gateway_sessions_bound": "gauge", "gateway_uids": "gauge", "gateway_rooms": "gauge",
        "gateway_memberships": "gauge", "gateway_joins_refused_total": "counter",
        "gateway_pushes_total": "counter", "gateway_push_deliveries_total": "counter",
        "gateway_push_nobody_total": "counter", "gateway_push_dropped_total": "counter",
        "gateway_push_overflow_closes_total": "counter", "gateway_pending_bytes": "gauge",
        "gateway_buffered_bytes": "gauge", "gateway_shedding": "gauge", "gateway_shedding_spells_total": "counter", "gateway_reconnect_notices_total": "counter",
        "gateway_handover_connections_total": "counter", "gateway_handover_sessions_total": "counter",
        "gateway_ring_frames": "gauge", "gateway_inbox_depth": "gauge",
        "gateway_upstream_rtt_seconds": "histogram", "gateway_upstream_rtt_samples_lost_total": "counter",
        "gateway_upstream_lost_notices_total": "counter", "gateway_queue_overflow_closes_total": "counter",
        "gateway_push_drop_notices_total": "counter",
        "gateway_tls_handshakes_total": "counter", "gateway_tls_resumed_total": "counter",
        "gateway_tls_own_records_total": "counter",
        "gateway_tls_handshaking": "gauge", "gateway_tls_lock_waits_total": "counter",
        "gateway_udp_sessions_open": "gauge", "gateway_udp_sessions_total": "counter",
        "gateway_udp_sessions_proven_total": "counter", "gateway_udp_datagrams_total": "counter",
        "gateway_udp_calls_total": "counter", "gateway_udp_withheld_bytes_total": "counter",
        "gateway_udp_drops_total": "counter",
    ]

    func testMetricsAgainstAKnownLoad() throws {
        let f = try AdminFixture()
        defer { f.stop() }
        // 3 connections x 100 echoed frames of 100 bytes.
        let clients = try (0..<3).map { _ in try BlockingSocket(port: f.gateway.port) }
        for client in clients {
            for seq in 0..<100 {
                let request = frame(seq: UInt32(seq), length: 100)
                try client.send(request)
                XCTAssertEqual(client.receive(request.count), request)
            }
        }
        // Bytes out are counted after the write that the client has already read from.
        XCTAssertTrue(waitUntil { f.gateway.stats().bytesOut == 30_000 })

        let reply = try http("GET", "/metrics", port: f.adminPort)
        XCTAssertEqual(reply.status, 200)
        XCTAssertEqual(reply.headers["content-type"], "text/plain; version=0.0.4; charset=utf-8")
        XCTAssertEqual(types(reply.body), Self.families)
        for line in reply.body.split(separator: "\n") {
            let name = line.hasPrefix("#") ? line.split(separator: " ")[2] : line
            XCTAssertTrue(name.hasPrefix("gateway_"), String(line))
        }
        var m = samples(reply.body)
        XCTAssertEqual(m["gateway_connections_open"], 3)
        XCTAssertEqual(m["gateway_connections_accepted_total"], 3)
        XCTAssertEqual(m["gateway_frames_in_total"], 300)
        XCTAssertEqual(m["gateway_frames_out_total"], 300)
        XCTAssertEqual(m["gateway_bytes_in_total"], 30_000)
        XCTAssertEqual(m["gateway_bytes_out_total"], 30_000)
        XCTAssertEqual(m[#"gateway_links{state="up"}"#], 0)
        XCTAssertEqual(m[#"gateway_links{state="down"}"#], 0)
        XCTAssertEqual(m[#"gateway_answered_total{status="no_upstream"}"#], 0)
        XCTAssertEqual(m["gateway_shedding"], 0)
        for stage in GatewayStats.stageNames { XCTAssertNotNil(m[#"gateway_inbox_depth{stage="\#(stage)"}"#]) }
        for direction in ["receive", "send"] { XCTAssertNotNil(m[#"gateway_ring_frames{direction="\#(direction)"}"#]) }
        for cause in CloseCause.allCases {
            let family = cause.isRefusal ? "gateway_refusals_total" : "gateway_closes_total"
            XCTAssertEqual(m[#"\#(family){cause="\#(cause)"}"#], 0, "\(cause)")
        }
        // No upstream, so no round trips; the histogram is there, empty.
        XCTAssertEqual(m["gateway_upstream_rtt_seconds_count"], 0)
        XCTAssertEqual(m[#"gateway_upstream_rtt_seconds_bucket{le="+Inf"}"#], 0)

        for client in clients { client.close() }
        XCTAssertTrue(waitUntil { f.gateway.stats().closes(.peer) == 3 && f.gateway.stats().connectionsOpen == 0 })
        // Scraped twice: the totals are those of the engine, not added up twice.
        _ = try http("GET", "/metrics", port: f.adminPort)
        m = samples(try http("GET", "/metrics", port: f.adminPort).body)
        XCTAssertEqual(m["gateway_connections_open"], 0)
        XCTAssertEqual(m["gateway_connections_accepted_total"], 3)
        XCTAssertEqual(m["gateway_frames_in_total"], 300)
        XCTAssertEqual(m["gateway_bytes_out_total"], 30_000)
        XCTAssertEqual(m[#"gateway_closes_total{cause="peer"}"#], 3)
        XCTAssertEqual(m[#"gateway_closes_total{cause="idle"}"#], 0)
    }

    func testRoundTripHistogram() throws {
        var config = GatewayConfig()
        config.maxConnections = 64
        let metrics = AdminMetrics(control: TestControl(try Gateway(config: config)))
        // 40 us, 75 us, 2 ms, 2 ms, 7 s (past the last bucket).
        metrics.record(roundTripNanoseconds: [40_000, 75_000, 2_000_000, 2_000_000, 7_000_000_000])
        let m = samples(metrics.render())
        func bucket(_ le: String) -> Double? { m[#"gateway_upstream_rtt_seconds_bucket{le="\#(le)"}"#] }
        XCTAssertEqual(bucket("0.00005"), 1)
        XCTAssertEqual(bucket("0.0001"), 2)
        XCTAssertEqual(bucket("0.001"), 2)
        XCTAssertEqual(bucket("0.0025"), 4)
        XCTAssertEqual(bucket("5.0"), 4)
        XCTAssertEqual(bucket("+Inf"), 5)
        XCTAssertEqual(m["gateway_upstream_rtt_seconds_count"], 5)
        XCTAssertEqual(try XCTUnwrap(m["gateway_upstream_rtt_seconds_sum"]), 7.004115, accuracy: 1e-9)
        XCTAssertEqual(m["gateway_upstream_rtt_samples_lost_total"], 0)
        let bounds = m.keys.filter { $0.hasPrefix("gateway_upstream_rtt_seconds_bucket") }
        XCTAssertEqual(bounds.count, AdminMetrics.roundTripBuckets.count + 1)
    }

    /// docs/ADMIN.md names every metric family.
    func testEveryMetricIsDocumented() throws {
        let docs = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .appendingPathComponent("../../docs/ADMIN.md")
        let text = try String(contentsOf: docs, encoding: .utf8)
        for name in Self.families.keys {
            XCTAssertTrue(text.contains("`\(name)`") || text.contains("`\(name){"), name)
        }
    }
}
