import CLinux
import GatewayAdmin
import GatewayCore
import Glibc
import Logging

/// `--workers N`: creates (or takes over) one SO_REUSEPORT listening socket per worker and address and
/// holds them all; starts N worker processes, each a whole four-thread engine with its own file limit on
/// its own sockets; and supervises them. The kernel spreads new connections over the sockets
/// (ReusePortGroup), so the spread does not depend on which worker happens to be waiting. A worker that
/// dies loses only its own connections; its socket stays open here, so the connections that reach it
/// meanwhile wait in its queue for the replacement, which is started at once, then after a back-off
/// (1 s doubling to 30 s, back to none once one ran a minute). Every start waits for the worker's
/// READY (WorkerReport): at start-up any worker that cannot start stops the whole start with its reason;
/// later a worker that exits straight after every start is reported (log, metric, /healthz 503).
/// SIGTERM and SIGINT are passed on and waited for, SIGHUP is passed on.
final class Master {
    private struct Worker {
        var pid: pid_t?
        var startedAt: Double = 0
        var backoff: Double = 0
        var restartAt: Double?
        /// The read end of the running worker's report pipe, until it closes it.
        var report: Int32 = -1
        var ready = false
        /// It said HANDED_OVER: its exit ends it, with no restart.
        var handedOver = false
        /// Exits in a row before READY or within `quickExitSeconds` of starting.
        var quickExits = 0
    }

    /// A worker that ends sooner than this after its start exited "straight after" it.
    static let quickExitSeconds = 10.0
    /// This many quick exits in a row and a worker is reported failing.
    static let failingAfter = 3
    /// How long start-up waits for every worker's READY.
    static let startSeconds = 60.0

    private let settings: Settings
    private let logger: Logger
    private let signals: ProcessSignals
    private var workers: [Worker]
    let board: WorkerBoard
    private var spawner: WorkerSpawner!
    /// Every listening socket, per address, in the order it joined its group (ReusePortGroup.steer).
    private var groups: [[Int32]] = []
    private var restarts = 0
    private var stopping = false
    private var starting = true

    private let service: ServiceManager

    init(settings: Settings, logger: Logger, signals: ProcessSignals, service: ServiceManager) {
        self.settings = settings
        self.service = service
        self.logger = logger
        self.signals = signals
        workers = Array(repeating: Worker(), count: settings.workers)
        board = WorkerBoard(count: settings.workers)
    }

    /// Worker `index`'s sockets: the index-th of each address, which new connections are steered to,
    /// then every N-th after it in each group (sockets of workers a predecessor ran beyond N, which get
    /// no new connections but may hold some that were queued before the take-over).
    private func listeners(of index: Int) -> [Int32] {
        let n = workers.count
        return groups.map { $0[index] } + groups.flatMap { group in
            stride(from: index + n, to: group.count, by: n).map { group[$0] }
        }
    }

    func run(takeOver: String?) -> Never {
        let handover: TakeOver?
        do {
            handover = try takeOver.flatMap { path throws(HandoverError) in try TakeOver.ask(path, logger: logger) }
        } catch {
            failStartup("cannot take over: \(error)", code: 1)
        }
        if let path = settings.controlSocket, handover == nil {
            do throws(HandoverError) { try ControlServer.checkFree(path) } catch { failStartup("\(error)", code: 1) }
        }
        openListeners(inheriting: handover?.listeners)
        let generation = handover?.generation ?? 0
        var ticketSecret: Int32?
        if settings.config.servesTLS, settings.config.tls.ticketKeyFile == nil {
            do {
                ticketSecret = try TicketSecret.make()
            } catch {
                abortStart("\(error)")
            }
        }
        spawner = WorkerSpawner(commandLine: CommandLine.arguments, generation: generation, ticketSecret: ticketSecret)
        for index in workers.indices { start(index) }
        // Until every worker serves, a predecessor serves on: a failure here changes nothing for it.
        awaitStart()
        starting = false
        handover?.started(logger: logger)
        let all = groups.flatMap { $0 }
        var control: ControlServer?
        if let path = settings.controlSocket {
            do {
                control = try ControlServer(path: path, successor: handover != nil, generation: generation,
                                            listeners: all, drainSeconds: settings.config.drainTimeout,
                                            logger: logger) {
                    // Workers are signalled from the main loop, which owns their pids.
                    kill(getpid(), SIGUSR2)
                }
                control?.start()
            } catch {
                // Once the old master drains, this one serves on without a control socket rather than stop too.
                if handover != nil {
                    logger.error("serving without a control socket (no later hot restart): \(error)")
                } else {
                    abortStart("\(error)")
                }
            }
        }
        var admin = startAdmin(successor: handover != nil)
        let addresses = Gateway.addresses(of: groups.map { $0[0] }).joined(separator: ",")
        logger.notice("master \(getpid()): \(workers.count) workers on \(addresses), \(all.count) listening sockets")
        service.ready("\(workers.count) workers on \(addresses)")
        supervise { signal in
            // Handed over: the successor needs the admin port; a drain asked by /drain keeps it, for /healthz.
            if signal == SIGUSR2, control?.handedOver == true, admin != nil {
                admin?.stop()
                admin = nil
                logger.notice("admin endpoint closed for the process taking over")
            }
        }
        admin?.stop()
        control?.stop()
        logger.notice("master: every worker has exited; \(restarts) restarts")
        exit(0)
    }

    /// Binds N sockets per address, or takes the predecessor's and adds sockets up to N per address; then
    /// steers each address's new connections to its first N sockets. Exits on failure.
    private func openListeners(inheriting inherited: [Int32]?) {
        let config = settings.config
        let n = workers.count
        do throws(SocketError) {
            if let inherited {
                for group in try ReusePortGroup.byAddress(inherited) {
                    groups.append(try ReusePortGroup.extend(group, to: n, backlog: config.backlog))
                }
            } else {
                for address in config.listenAddresses {
                    groups.append(try ReusePortGroup.bind(address, backlog: config.backlog, count: n))
                }
            }
            for group in groups { try ReusePortGroup.steer(group[0], count: n) }
        } catch {
            let addresses = config.listenAddresses.map(\.description).joined(separator: ",")
            failStartup("cannot listen on \(addresses): \(error)", code: 1)
        }
        let total = groups.reduce(0) { $0 + $1.count }
        let most = workers.indices.map { listeners(of: $0).count }.max() ?? 0
        if most > Gateway.maxListeners {
            failStartup("invalid workers '\(n)': allowed a number that gives each worker at most "
                        + "\(Gateway.maxListeners) listening sockets (here \(most), of \(total) taken over)", code: 2)
        }
        if settings.controlSocket != nil, total > HandoverLine.maxListeners {
            failStartup("invalid workers '\(n)': allowed at most \(HandoverLine.maxListeners) listening sockets in all "
                        + "with control_socket (here \(total))", code: 2)
        }
    }

    /// Until every worker reported READY: one that reports FAILED, exits, or is not ready in time stops the
    /// whole start-up, with its reason.
    private func awaitStart() {
        let deadline = Self.now() + Self.startSeconds
        while !workers.allSatisfy(\.ready) {
            let signal = signals.wait(timeout: .milliseconds(20))
            if signal == SIGTERM || signal == SIGINT { abortStart("\(ProcessSignals.name(signal!)) while starting") }
            if let failure = readReports() ?? reap() { abortStart(failure) }
            if Self.now() > deadline {
                let late = workers.indices.filter { !workers[$0].ready }.map(String.init).joined(separator: ",")
                abortStart("worker \(late) not serving after \(Int(Self.startSeconds)) s")
            }
        }
    }

    /// Stops every worker started so far, then the master, with `reason`.
    private func abortStart(_ reason: String) -> Never {
        stopAll(SIGTERM)
        let deadline = Self.now() + 10
        while workers.contains(where: { $0.pid != nil }), Self.now() < deadline {
            _ = signals.wait(timeout: .milliseconds(20))
            _ = reap()
        }
        for w in workers { if let pid = w.pid { kill(pid, SIGKILL) } }
        failStartup(reason, code: 1)
    }

    /// Until every worker is gone after a stop or a hand-over. `onSignal` sees each signal first.
    private func supervise(onSignal: (Int32?) -> Void) {
        while true {
            let signal = signals.wait(timeout: .milliseconds(100))
            onSignal(signal)
            switch signal {
            case SIGINT, SIGTERM:
                logger.notice("\(ProcessSignals.name(signal!)): stopping the workers")
                service.stopping()
                stopAll(SIGTERM)
            case SIGUSR2:
                logger.notice("the workers drain for a restart")
                _ = board.beginDrain()
                stopAll(SIGUSR2)
            case SIGHUP:
                // Each worker re-reads the settings itself; the master's own (workers, listeners) need a restart.
                logger.notice("SIGHUP: passed to the workers")
                service.reloading()
                for w in workers { if let pid = w.pid { kill(pid, SIGHUP) } }
                service.reloaded()
            default:
                break
            }
            service.tick()
            _ = readReports()
            _ = reap()
            if workers.allSatisfy({ $0.pid == nil }), stopping || workers.allSatisfy(\.handedOver) { return }
            guard !stopping else { continue }
            let now = Self.now()
            for index in workers.indices {
                if let at = workers[index].restartAt, now >= at { start(index) }
                recoverIfSteady(index, now: now)
            }
        }
    }

    private func stopAll(_ signal: Int32) {
        stopping = true
        for index in workers.indices {
            workers[index].restartAt = nil
            if let pid = workers[index].pid { kill(pid, signal) }
        }
    }

    private func start(_ index: Int) {
        workers[index].restartAt = nil
        var ends: [Int32] = [-1, -1]
        guard gw_report_pipe(&ends) == 0 else {
            let reason = String(cString: strerror(errno))
            logger.error("worker \(index): pipe: \(reason); retrying in \(workers[index].backoff) s")
            return scheduleRestart(index)
        }
        defer { close(ends[1]) }
        do {
            let pid = try spawner.spawn(index: index, listeners: listeners(of: index), report: ends[1])
            workers[index].pid = pid
            workers[index].startedAt = Self.now()
            workers[index].ready = false
            workers[index].handedOver = false
            workers[index].report = ends[0]
            board.update(index) { $0.pid = pid }
            logger.info("worker \(index) started: pid \(pid)")
        } catch {
            close(ends[0])
            if starting { abortStart("\(error)") }
            logger.error("\(error); retrying in \(workers[index].backoff) s")
            scheduleRestart(index)
        }
    }

    /// Reads what workers reported; at start-up, the first failure's reason.
    private func readReports() -> String? {
        var failure: String?
        for index in workers.indices { failure = failure ?? readReport(of: index) }
        return failure
    }

    /// What worker `index` wrote since the last read; the reason if it could not start.
    private func readReport(of index: Int) -> String? {
        guard workers[index].report >= 0 else { return nil }
        var buffer = [UInt8](repeating: 0, count: 2 * WorkerReport.maxLength)
        let n = buffer.withUnsafeMutableBytes { read(workers[index].report, $0.baseAddress, $0.count) }
        if n < 0, errno == EAGAIN { return nil }
        // Each line is written whole; end of file before one means the worker died first. Only READY is
        // followed by more (HANDED_OVER, or end of file when the worker exits).
        let reports = String(decoding: buffer.prefix(max(n, 0)), as: UTF8.self)
            .split(whereSeparator: \.isNewline).map(WorkerReport.init(parsing:))
        if case .ready = reports.last {} else {
            close(workers[index].report)
            workers[index].report = -1
        }
        var failure: String?
        for report in reports { failure = failure ?? take(report, from: index) }
        return failure
    }

    /// Acts on one report of worker `index`; the reason if it could not start.
    private func take(_ report: WorkerReport?, from index: Int) -> String? {
        switch report {
        case .ready(let port):
            workers[index].ready = true
            board.update(index) {
                $0.serving = true
                $0.adminPort = port == 0 ? nil : port
            }
            logger.info("worker \(index) serving\(port == 0 ? "" : ", its admin endpoint on 127.0.0.1:\(port)")")
        case .failed(let why):
            logger.error("worker \(index) could not start: \(why)")
            return "worker \(index) could not start: \(why)"
        case .handedOver:
            workers[index].handedOver = true
            logger.notice("worker \(index) handed its connections to its successor")
        case nil:
            break  // died before a word: reap() tells how
        }
        return nil
    }

    /// Once a restarted worker has served steadily, it is no longer counted failing.
    private func recoverIfSteady(_ index: Int, now: Double) {
        let w = workers[index]
        guard w.ready, w.quickExits > 0, now - w.startedAt >= Self.quickExitSeconds else { return }
        if w.quickExits >= Self.failingAfter { logger.notice("worker \(index) serves again after failing") }
        workers[index].quickExits = 0
        board.update(index) { $0.failing = false }
    }

    /// Collects every worker that ended and schedules the unexpected ones to start again; at start-up,
    /// the first one's end as a failure.
    private func reap() -> String? {
        var failure: String?
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG)
            guard pid > 0 else { return failure }
            guard let index = workers.firstIndex(where: { $0.pid == pid }) else { continue }
            // A HANDED_OVER is written before the exit: read it now, or a restart would race it.
            failure = failure ?? readReport(of: index)
            let how = Self.describe(status)
            let quick = !workers[index].ready || Self.now() - workers[index].startedAt < Self.quickExitSeconds
            workers[index].pid = nil
            workers[index].ready = false
            if workers[index].report >= 0 {
                close(workers[index].report)
                workers[index].report = -1
            }
            board.update(index) {
                $0.pid = nil
                $0.serving = false
                $0.lastExit = how
            }
            if stopping || workers[index].handedOver {
                logger.info("worker \(index) (pid \(pid)) \(how)")
                continue
            }
            if starting {
                failure = failure ?? "worker \(index) could not start: it \(how) before serving"
                continue
            }
            restarts += 1
            if Self.now() - workers[index].startedAt >= 60 { workers[index].backoff = 0 }
            workers[index].quickExits = quick ? workers[index].quickExits + 1 : 0
            let failing = workers[index].quickExits >= Self.failingAfter
            board.update(index) {
                $0.restarts += 1
                $0.failing = failing
            }
            logger.error("worker \(index) (pid \(pid)) \(how); restart \(restarts), in \(workers[index].backoff) s")
            if failing {
                logger.critical("""
                    worker \(index) exits straight after every start (\(workers[index].quickExits) times in a row, \
                    last: \(how)): the box serves without it; /healthz answers 503
                    """)
            }
            scheduleRestart(index)
        }
    }

    private func scheduleRestart(_ index: Int) {
        workers[index].restartAt = Self.now() + workers[index].backoff
        workers[index].backoff = min(max(workers[index].backoff * 2, 1), 30)
    }

    /// `--admin`: the master's endpoint for the whole box (MasterAdmin). A failed bind stops start-up; a
    /// successor, whose predecessor closes its endpoint only once handed over, retries for five seconds.
    private func startAdmin(successor: Bool) -> AdminServer? {
        guard let address = settings.admin else { return nil }
        let deadline = Self.now() + (successor ? 5 : 0)
        while true {
            do {
                let service = MasterAdmin(board: board, logger: logger)
                let server = try AdminServer(host: address.host, port: address.port, allowPublic: settings.adminPublic,
                                             service: service, logger: logger)
                let port = try server.start()
                logger.notice(
                    "admin endpoint for the box on \(address.host):\(port) (/metrics /healthz /stats /drain /reload)")
                return server
            } catch {
                if Self.now() < deadline {
                    usleep(100_000)
                    continue
                }
                guard successor else { abortStart("\(error)") }
                logger.error("serving without the admin endpoint: \(error)")
                return nil
            }
        }
    }

    private static func describe(_ status: Int32) -> String {
        let signal = status & 0x7F
        if signal == 0 { return "exited with status \((status >> 8) & 0xFF)" }
        return "was killed by signal \(signal)"
    }

    private static func now() -> Double { Double(MonotonicClock.nanoseconds()) / 1e9 }
}
