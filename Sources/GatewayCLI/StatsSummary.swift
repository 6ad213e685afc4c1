import GatewayCore

/// The periodic one-line stats summary: totals for what is a level, rates or
/// counts over the interval for what is a counter.
public enum StatsSummary {
    public static func line(from old: GatewayStats, to new: GatewayStats, seconds: Double) -> String {
        func rate(_ counter: KeyPath<GatewayStats, UInt64>) -> Double {
            seconds > 0 ? Double(new[keyPath: counter] - old[keyPath: counter]) / seconds : 0
        }
        var line = "open \(new.connectionsOpen), accepted \(new.accepted - old.accepted)"
            + ", frames/s in \(Int(rate(\.framesIn).rounded())) out \(Int(rate(\.framesOut).rounded()))"
            + ", bytes/s in \(bytes(rate(\.bytesIn))) out \(bytes(rate(\.bytesOut)))"
        let closes = CloseCause.allCases.compactMap { cause -> String? in
            let count = new.closes(cause) - old.closes(cause)
            return count > 0 ? "\(cause) \(count)" : nil
        }
        if !closes.isEmpty { line += ", closes " + closes.joined(separator: " ") }
        if new.udp.sessionsOpened > 0 {
            let drops = UDPStats.dropCauses.compactMap { name, value -> String? in
                let n = value(new.udp) - value(old.udp)
                return n > 0 ? "\(name) \(n)" : nil
            }
            // What batching gives: datagrams per recvmmsg and per sendmmsg over the interval.
            func perCall(_ datagrams: UInt64, _ calls: UInt64) -> String {
                calls == 0 ? "0" : String(Double(datagrams) / Double(calls)).prefix(4).description
            }
            let (u, v) = (new.udp, old.udp)
            line += ", udp sessions \(u.sessionsOpen) datagrams/call in "
                + perCall(u.datagramsIn - v.datagramsIn, u.receiveCalls - v.receiveCalls) + " out "
                + perCall(u.datagramsOut - v.datagramsOut, u.sendCalls - v.sendCalls)
                + (drops.isEmpty ? "" : " dropped " + drops.joined(separator: " "))
        }
        let moves = [("out", \GatewayStats.handedOver), ("lost", \.handoverLost), ("adopted", \.handoverAdopted)]
            .compactMap { name, path -> String? in
                let n = new[keyPath: path] - old[keyPath: path]
                return n > 0 ? "\(name) \(n)" : nil
            }
        if !moves.isEmpty { line += ", handover " + moves.joined(separator: " ") }
        if new.shedding { line += ", SHEDDING: not reading clients, buffers \(bytes(Double(new.bufferedBytes)))" }
        if new.linksUp > 0 || new.linkCloses > 0 || new.noUpstreamReplies > 0 {
            line += ", links up \(new.linksUp) closed \(new.linkCloses - old.linkCloses)"
                + ", forwarded/s up \(Int(rate(\.forwardedUp).rounded())) down \(Int(rate(\.forwardedDown).rounded()))"
            if new.downlinksUp > 0 || new.linksRefused > old.linksRefused {
                line += ", lower links up \(new.downlinksUp) refused \(new.linksRefused - old.linksRefused)"
            }
            let drops: [(String, KeyPath<GatewayStats, UInt64>)] = [
                ("no_upstream", \.noUpstreamReplies), ("reserved_command", \.reservedCommandReplies),
                ("overloaded", \.overloadedReplies), ("too_large", \.tooLargeReplies),
                ("upstream_lost", \.upstreamLostNotices), ("queue_overflow_closed", \.queueOverflowCloses),
                ("stale", \.staleDrops), ("link_malformed", \.linkMalformed), ("too_large_dropped", \.tooLargeDrops),
            ]
            let counted = drops.compactMap { name, path -> String? in
                let n = new[keyPath: path] - old[keyPath: path]
                return n > 0 ? "\(name) \(n)" : nil
            }
            if !counted.isEmpty { line += ", answered/dropped " + counted.joined(separator: " ") }
        }
        if new.sessionsBound > 0 || new.rooms > 0 || new.pushes > old.pushes {
            line += ", bound \(new.sessionsBound) uids \(new.uids) rooms \(new.rooms)"
                + ", pushes/s \(Int(rate(\.pushes).rounded())) delivered/s \(Int(rate(\.pushDeliveries).rounded()))"
            let drops: [(String, KeyPath<GatewayStats, UInt64>)] = [
                ("nobody", \.pushNobody), ("dropped", \.pushDropped), ("overflow_closed", \.pushOverflowCloses),
                ("duplicates", \.duplicates), ("joins_refused", \.joinsRefused),
                ("dropped_closing", \.pushDroppedClosing), ("drop_notices", \.pushDropNotices),
            ]
            let counted = drops.compactMap { name, path -> String? in
                let n = new[keyPath: path] - old[keyPath: path]
                return n > 0 ? "\(name) \(n)" : nil
            }
            if !counted.isEmpty { line += ", push " + counted.joined(separator: " ") }
        }
        if new.tlsHandshakes > 0 || new.tlsHandshaking > 0 {
            let takes = new.tlsLockTakes - old.tlsLockTakes, waits = new.tlsLockWaits - old.tlsLockWaits
            line += ", tls handshakes/s \(Int(rate(\.tlsHandshakes).rounded())) resumed \(new.tlsResumed - old.tlsResumed)"
                + " in progress \(new.tlsHandshaking), lock waits \(waits) of \(takes)"
        }
        return line
    }

    /// 1536 -> "1.5K": short enough that the line stays one glance wide.
    static func bytes(_ value: Double) -> String {
        let units = ["", "K", "M", "G", "T"]
        var scaled = value
        var unit = 0
        while scaled >= 1024, unit < units.count - 1 {
            scaled /= 1024
            unit += 1
        }
        if unit == 0 { return String(Int(scaled.rounded())) }
        let tenths = Int((scaled * 10).rounded())
        return "\(tenths / 10).\(tenths % 10)\(units[unit])"
    }
}
