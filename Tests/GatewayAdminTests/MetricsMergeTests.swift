@testable import GatewayAdmin
import Testing

/// A master's exposition from its workers': each sample labelled, each family's HELP and TYPE once.
@Suite struct MetricsMergeTests {
    @Test func samplesAreLabelledAndFamiliesKeptTogether() {
        let worker = """
            # HELP gateway_a_total A.
            # TYPE gateway_a_total counter
            gateway_a_total 3
            # HELP gateway_b B.
            # TYPE gateway_b gauge
            gateway_b{state="up"} 1.0
            # HELP gateway_h_seconds H.
            # TYPE gateway_h_seconds histogram
            gateway_h_seconds_bucket{le="0.5"} 2
            gateway_h_seconds_sum 0.7
            """
        let merged = MetricsMerge.merge([("0", worker), ("1", worker.replacingOccurrences(of: " 3", with: " 4"))],
                                        label: "worker")
        #expect(merged == """
            # HELP gateway_a_total A.
            # TYPE gateway_a_total counter
            gateway_a_total{worker="0"} 3
            gateway_a_total{worker="1"} 4
            # HELP gateway_b B.
            # TYPE gateway_b gauge
            gateway_b{worker="0",state="up"} 1.0
            gateway_b{worker="1",state="up"} 1.0
            # HELP gateway_h_seconds H.
            # TYPE gateway_h_seconds histogram
            gateway_h_seconds_bucket{worker="0",le="0.5"} 2
            gateway_h_seconds_sum{worker="0"} 0.7
            gateway_h_seconds_bucket{worker="1",le="0.5"} 2
            gateway_h_seconds_sum{worker="1"} 0.7

            """)
    }

    @Test func emptyLabelSetsAndStrayLines() {
        #expect(MetricsMerge.labelled("x{} 1", label: "w", value: "2") == "x{w=\"2\"} 1")
        #expect(MetricsMerge.labelled(" 1", label: "w", value: "2") == nil)
        #expect(MetricsMerge.merge([("0", "# a comment\nx 1\n")], label: "w") == "x{w=\"0\"} 1\n")
    }
}
