import GatewayCLI
import GatewayCore
import Testing

@Suite struct StatsSummaryTests {
    @Test func ratesOverTheIntervalAndNonZeroClosesOnly() {
        var old = GatewayStats()
        old.accepted = 100
        old.framesIn = 1_000
        old.framesOut = 1_000
        old.bytesIn = 10_000
        old.bytesOut = 10_000
        old.closes[CloseCause.peer.rawValue] = 7
        old.closes[CloseCause.idle.rawValue] = 3
        var new = old
        new.connectionsOpen = 42
        new.accepted = 110
        new.framesIn = 3_000
        new.framesOut = 2_000
        new.bytesIn = 10_000 + 2 * 3 * 1024 * 1024
        new.bytesOut = 10_000 + 2 * 1536
        new.closes[CloseCause.peer.rawValue] = 9
        new.closes[CloseCause.slowConsumer.rawValue] = 1

        #expect(StatsSummary.line(from: old, to: new, seconds: 2) ==
            "open 42, accepted 10, frames/s in 1000 out 500, bytes/s in 3.0M out 1.5K, closes peer 2 slow_consumer 1")
    }

    @Test func handoverOutcomesOverTheInterval() {
        var old = GatewayStats()
        old.handedOver = 400
        var new = old
        new.handedOver = 600
        new.handoverLost = 200
        #expect(StatsSummary.line(from: old, to: new, seconds: 1) ==
            "open 0, accepted 0, frames/s in 0 out 0, bytes/s in 0 out 0, handover out 200 lost 200")
        var adopting = GatewayStats()
        adopting.handoverAdopted = 1000
        #expect(StatsSummary.line(from: GatewayStats(), to: adopting, seconds: 1).hasSuffix(", handover adopted 1000"))
    }

    @Test func quietIntervalHasNoCloses() {
        var stats = GatewayStats()
        stats.connectionsOpen = 3
        #expect(StatsSummary.line(from: stats, to: stats, seconds: 10) ==
            "open 3, accepted 0, frames/s in 0 out 0, bytes/s in 0 out 0")
    }
}
