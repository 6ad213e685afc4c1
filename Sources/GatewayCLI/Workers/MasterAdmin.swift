import Foundation
import GatewayAdmin
import Glibc
import Logging
import Synchronization

/// The master's `--admin` endpoint, one for the whole box: it asks each worker's own endpoint (loopback,
/// a port each picks and reports) and answers for all of them. /metrics carries every worker's series
/// labelled `worker="i"` plus the master's own; /healthz is 200 only while every worker serves;
/// /stats has each worker's counters and their totals; /drain and /reload act on every worker.
final class MasterAdmin: AdminService {
    private let board: WorkerBoard
    private let logger: Logger

    init(board: WorkerBoard, logger: Logger) {
        self.board = board
        self.logger = logger
    }

    /// Each worker's answer to `method path` (nil: not serving, or it did not answer), asked in parallel.
    private func ask(_ method: String, _ path: String) -> [(index: Int, answer: (status: Int, body: String)?)] {
        let statuses = board.all
        let answers = Mutex<[(status: Int, body: String)?]>(Array(repeating: nil, count: statuses.count))
        DispatchQueue.concurrentPerform(iterations: statuses.count) { i in
            guard statuses[i].serving, let port = statuses[i].adminPort,
                  let answer = try? LoopbackHTTP.request(method, path, port: port) else { return }
            answers.withLock { $0[i] = answer }
        }
        let all = answers.withLock { $0 }
        return statuses.indices.map { ($0, all[$0]) }
    }

    func metrics() -> String {
        let statuses = board.all
        var parts: [(value: String, text: String)] = []
        var up = Array(repeating: false, count: statuses.count)
        for (i, answer) in ask("GET", "/metrics") {
            guard let answer, answer.status == 200 else { continue }
            up[i] = true
            parts.append(("\(i)", answer.body))
        }
        var own = ""
        func family(_ name: String, _ type: String, _ help: String, _ value: (Int) -> Int) {
            own += "# HELP \(name) \(help)\n# TYPE \(name) \(type)\n"
            for i in statuses.indices { own += "\(name){worker=\"\(i)\"} \(value(i))\n" }
        }
        family("gateway_worker_up", "gauge", "1 while the worker serves and its metrics were read in this scrape.") {
            up[$0] ? 1 : 0
        }
        family("gateway_worker_restarts_total", "counter", "Times the master started the worker again.") {
            statuses[$0].restarts
        }
        family("gateway_worker_failing", "gauge", "1 while the worker exits straight after every start.") {
            statuses[$0].failing ? 1 : 0
        }
        return MetricsMerge.merge(parts, label: "worker") + own
    }

    func health() -> (serving: Bool, reason: String) {
        if board.draining { return (false, "draining") }
        let statuses = board.all
        if let i = statuses.firstIndex(where: \.failing) {
            return (false, "worker \(i) exits straight after every start (\(statuses[i].lastExit ?? "no exit yet"))")
        }
        if let i = statuses.firstIndex(where: { !$0.serving }) {
            return (false, "worker \(i) not serving (\(statuses[i].lastExit ?? "starting"))")
        }
        return (true, "serving: \(statuses.count) workers")
    }

    func statsObject() -> [String: Any] {
        let statuses = board.all
        var workers: [[String: Any]] = []
        var totals: [String: Any] = [:]
        for (i, answer) in ask("GET", "/stats") {
            var entry: [String: Any] = [
                "worker": i, "serving": statuses[i].serving, "restarts": statuses[i].restarts,
                "failing": statuses[i].failing,
            ]
            if let pid = statuses[i].pid { entry["pid"] = Int(pid) }
            if let answer, answer.status == 200,
               let object = try? JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any] {
                entry["stats"] = object
                totals = Self.sum(totals, object)
            }
            workers.append(entry)
        }
        return ["workers": workers, "totals": totals]
    }

    /// Numbers added key by key, objects within objects too; flags and text taken from the first.
    static func sum(_ a: [String: Any], _ b: [String: Any]) -> [String: Any] {
        var out = a
        for (key, value) in b {
            switch (a[key], value) {
            case (nil, _): out[key] = value
            case (let x as [String: Any], let y as [String: Any]): out[key] = sum(x, y)
            case (let x as NSNumber, let y as NSNumber) where !Self.isBool(x) && !Self.isBool(y):
                out[key] = x.doubleValue.rounded() == x.doubleValue && y.doubleValue.rounded() == y.doubleValue
                    ? NSNumber(value: x.int64Value + y.int64Value) : NSNumber(value: x.doubleValue + y.doubleValue)
            default: break
            }
        }
        return out
    }

    /// JSON's true and false come as NSNumbers of type char; its numbers as long long or double.
    private static func isBool(_ n: NSNumber) -> Bool { String(cString: n.objCType) == "c" }

    /// Drains every worker, as a take-over does (the master's main loop sends them SIGUSR2).
    func drain() -> Bool {
        guard board.beginDrain() else { return false }
        kill(getpid(), SIGUSR2)
        return true
    }

    func reload() -> ReloadOutcome {
        var changed = Set<String>(), needRestart = Set<String>()
        var refusals: [String] = []
        for (i, answer) in ask("POST", "/reload") {
            guard let answer else {
                refusals.append("worker \(i): not serving")
                continue
            }
            guard answer.status == 200,
                  let object = try? JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any]
            else {
                refusals.append("worker \(i): \(answer.body.trimmingCharacters(in: .whitespacesAndNewlines))")
                continue
            }
            changed.formUnion(object["changed"] as? [String] ?? [])
            needRestart.formUnion(object["need_restart"] as? [String] ?? [])
        }
        if !refusals.isEmpty {
            logger.error("reload: \(refusals.joined(separator: "; "))")
            return .rejected(refusals.joined(separator: "; "))
        }
        return .applied(changed: changed.sorted(), needRestart: needRestart.sorted())
    }
}
