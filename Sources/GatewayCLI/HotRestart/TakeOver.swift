import GatewayCore
import Glibc
import Logging

/// `--take-over PATH`: the new process's side of a hot restart. It asks the running gateway at PATH
/// for its listening sockets, starts serving on them, then says so; only then does the old one
/// stop accepting and drain. Until `started()` the old process serves as before, so a new one
/// that fails to start changes nothing.
struct TakeOver {
    let listeners: [Int32]
    /// This process's generation: the old one's plus one.
    let generation: UInt32
    private let stream: UnixStream

    /// Nil when no gateway listens at `path` (none runs, or it died): then this one binds its own
    /// listeners, so one command line serves for the first start and for every restart.
    static func ask(_ path: String, logger: Logger) throws(HandoverError) -> TakeOver? {
        do {
            return try TakeOver(path: path)
        } catch where error.nobodyThere {
            logger.notice("nothing to take over at \(path) (\(error)): binding the listeners")
            return nil
        }
    }

    private init(path: String) throws(HandoverError) {
        stream = try UnixStream.connect(to: path)
        try stream.setTimeout(seconds: 60)
        try stream.send(.takeOver(version: HandoverLine.version))
        guard let reply = try stream.receive() else { throw HandoverError("\(path) closed without answering") }
        guard case .listeners(let count, let old) = HandoverLine(parsing: reply.line), count == reply.descriptors.count
        else {
            for fd in reply.descriptors { close(fd) }
            throw HandoverError("\(path) answered '\(reply.line.prefix(60))'")
        }
        listeners = reply.descriptors
        generation = old &+ 1
    }

    /// Serving on the listeners: tells the old process, which stops accepting and drains; logged.
    func started(logger: Logger) {
        do {
            let seconds = try confirm()
            logger.notice("took over \(listeners.count) listeners; the old process drains over \(seconds) s")
        } catch {
            logger.error("took over, but the old process did not confirm its drain: \(error)")
        }
    }

    /// Serving on the listeners, and asking for the old process's clients too (--handover connections):
    /// each batch goes to `gateway`, which serves it at once; then the old one drains what could not
    /// move. A failure part way is logged: the connections already adopted are served.
    func startedMoving(into gateway: Gateway, logger: Logger) {
        var adopted = 0
        do throws(HandoverError) {
            try stream.send(.startedMoving)
            guard let reply = try stream.receive() else { throw HandoverError("the old process went away") }
            switch HandoverLine(parsing: reply.line) {
            case .draining(let seconds)?:  // it cannot hand connections over (a master): they reconnect
                let drains = "the old process moves no connections and drains over \(seconds) s"
                logger.notice("took over \(listeners.count) listeners; \(drains)")
                return
            case .moving?:
                break
            default:
                throw HandoverError("the old process said '\(reply.line.prefix(40))'")
            }
            try stream.send(.adopted(count: 0))
            while true {
                let batch = try stream.receiveBatch()
                if batch.isEmpty { break }
                gateway.adopt(batch)
                adopted += batch.count
                try stream.send(.adopted(count: batch.count))
            }
            guard let end = try stream.receive(), case .draining(let seconds) = HandoverLine(parsing: end.line) else {
                throw HandoverError("the old process did not confirm its drain")
            }
            let drains = "the old process drains the rest over \(seconds) s"
            logger.notice("took over \(listeners.count) listeners and \(adopted) connections; \(drains)")
        } catch {
            logger.error("took over \(listeners.count) listeners and \(adopted) connections, then: \(error)")
        }
    }

    /// Returns the old process's drain window in seconds.
    private func confirm() throws(HandoverError) -> Int {
        try stream.send(.started)
        guard let reply = try stream.receive(), case .draining(let seconds) = HandoverLine(parsing: reply.line) else {
            throw HandoverError("the old process did not confirm its drain")
        }
        return seconds
    }
}
