import GatewayCore
import Logging

/// The old process's side of `--handover connections` (docs/HANDOVER.md): with accepting held, its
/// clients go to the new process a batch at a time, each batch quiesced while the others are served,
/// sent (descriptors and state), then detached here; the new process answers each with ADOPTED.
struct ConnectionSender {
    let gateway: Gateway
    /// handover_timeout: the whole hand-over's bound, and each exchange's.
    let seconds: Int
    let logger: Logger
    /// Connections a batch holds: under the 253 descriptors of one SCM_RIGHTS message.
    static let batchSize = 200
    /// How long one batch may take to quiesce: a connection not quiet by then stays here.
    static let quiesceNanoseconds: UInt64 = 1_000_000_000

    enum Outcome {
        /// Every client that could move has (or the bound came first): the rest drain.
        case done(moved: Int, kept: Int, timedOut: Bool)
        /// The new process stopped answering: the rest drain; the last batch's fate is unknown.
        case stalled(moved: Int, lost: Int, why: String)
        /// The new process went away: what it took is lost with it; the rest stay and are served here.
        case gone(lost: Int, why: String)
    }

    func run(_ stream: UnixStream) -> Outcome {
        let export = gateway.exportConnections()
        let deadline = MonotonicClock.nanoseconds() &+ UInt64(seconds) * 1_000_000_000
        var moved = 0
        var unanswered = 0
        do throws(HandoverError) {
            try stream.setTimeout(seconds: seconds)
            try stream.send(.moving)
            try expectAdopted(stream, 0)
            while !export.isDone {
                let now = MonotonicClock.nanoseconds()
                guard now < deadline else {
                    logger.warning("hand-over: handover_timeout (\(seconds) s) passed; the clients not yet moved drain")
                    try stream.sendState(try stream.sendBatchHeader([]))
                    return .done(moved: moved, kept: export.kept, timedOut: true)
                }
                let batch = export.quiesce(upTo: Self.batchSize, within: min(deadline - now, Self.quiesceNanoseconds))
                guard !batch.connections.isEmpty else { continue }
                let state: [UInt8]
                do {
                    state = try stream.sendBatchHeader(batch.connections)
                } catch {
                    export.resume(batch)  // not one descriptor left: served here as before
                    throw error
                }
                export.handedOver(batch)
                unanswered = batch.connections.count
                try stream.sendState(state)
                try expectAdopted(stream, unanswered)
                moved += unanswered
                unanswered = 0
            }
            try stream.sendState(try stream.sendBatchHeader([]))
            return .done(moved: moved, kept: export.kept, timedOut: false)
        } catch {
            if error.timedOut {
                export.lost(unanswered)
                return .stalled(moved: moved, lost: unanswered, why: error.description)
            }
            export.lost(moved + unanswered)
            return .gone(lost: moved + unanswered, why: error.description)
        }
    }

    private func expectAdopted(_ stream: UnixStream, _ count: Int) throws(HandoverError) {
        guard let reply = try stream.receive() else { throw HandoverError("the new process went away") }
        guard HandoverLine(parsing: reply.line) == .adopted(count: count) else {
            throw HandoverError("the new process said '\(reply.line.prefix(40))', not ADOPTED \(count)")
        }
    }
}
