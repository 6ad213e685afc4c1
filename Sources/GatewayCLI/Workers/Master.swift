import GatewayCore
import Glibc
import Logging

/// `--workers N`: binds the listeners once (or takes them over), starts N worker processes on them,
/// each a whole four-thread engine with its own file limit, and supervises them: a worker that dies is
/// started again after a back-off (1 s doubling to 30 s, back to 1 s once one ran a minute), counted and
/// logged; SIGTERM and SIGINT are passed on and waited for, SIGHUP is passed on (each worker re-reads
/// the settings). The workers share one accept queue per listener: the kernel hands each new connection
/// to one worker whose poller waits on it (EPOLLEXCLUSIVE), so a worker that dies loses only its own
/// connections, and connections still queued go to the others.
final class Master {
    private struct Worker {
        var pid: pid_t?
        var startedAt: Double = 0
        var backoff: Double = 1
        var restartAt: Double?
    }

    private let settings: Settings
    private let logger: Logger
    private let signals: ProcessSignals
    private var workers: [Worker]
    private var spawner: WorkerSpawner!
    private var restarts = 0
    private var stopping = false

    private let service: ServiceManager

    init(settings: Settings, logger: Logger, signals: ProcessSignals, service: ServiceManager) {
        self.settings = settings
        self.service = service
        self.logger = logger
        self.signals = signals
        workers = Array(repeating: Worker(), count: settings.workers)
    }

    func run(takeOver: String?) -> Never {
        let config = settings.config
        let handover: TakeOver?
        let listeners: [Int32]
        do {
            handover = try takeOver.flatMap { path throws(HandoverError) in try TakeOver.ask(path, logger: logger) }
            if let handover {
                listeners = handover.listeners
                for fd in listeners where fcntl(fd, F_SETFD, 0) != 0 {
                    failStartup("cannot pass listener \(fd) to workers: \(String(cString: strerror(errno)))", code: 1)
                }
            } else {
                listeners = try Gateway.bindListeners(config)
            }
        } catch let error as SocketError {
            let addresses = config.listenAddresses.map(\.description).joined(separator: ",")
            failStartup("cannot listen on \(addresses): \(String(cString: strerror(error.code)))", code: 1)
        } catch {
            failStartup("cannot take over: \(error)", code: 1)
        }
        let generation = handover?.generation ?? 0
        spawner = WorkerSpawner(commandLine: CommandLine.arguments, listeners: listeners, generation: generation)
        for index in workers.indices { start(index) }
        handover?.started(logger: logger)
        var control: ControlServer?
        if let path = settings.controlSocket {
            do {
                control = try ControlServer(path: path, successor: handover != nil, generation: generation,
                                            listeners: listeners, drainSeconds: config.drainTimeout, logger: logger) {
                    // Workers are signalled from the main loop, which owns their pids.
                    kill(getpid(), SIGUSR2)
                }
                control?.start()
            } catch {
                // Once the old master drains, this one serves on without a control socket rather than stop too.
                if handover != nil {
                    logger.error("serving without a control socket (no later hot restart): \(error)")
                } else {
                    stopAll(SIGTERM)
                    failStartup("\(error)", code: 1)
                }
            }
        }
        let addresses = Gateway.addresses(of: listeners).joined(separator: ",")
        logger.notice("master \(getpid()): \(workers.count) workers on \(addresses)")
        service.ready("\(workers.count) workers on \(addresses)")
        supervise()
        control?.stop()
        logger.notice("master: every worker has exited; \(restarts) restarts")
        exit(0)
    }

    /// Until every worker is gone after a stop or a hand-over.
    private func supervise() {
        while true {
            let signal = signals.wait(timeout: .milliseconds(250))
            switch signal {
            case SIGINT, SIGTERM:
                logger.notice("\(ProcessSignals.name(signal!)): stopping the workers")
                service.stopping()
                stopAll(SIGTERM)
            case SIGUSR2:
                logger.notice("taken over: the workers drain for the restart")
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
            reap()
            if stopping, workers.allSatisfy({ $0.pid == nil }) { return }
            guard !stopping else { continue }
            let now = Self.now()
            for index in workers.indices {
                if let at = workers[index].restartAt, now >= at { start(index) }
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
        do {
            let pid = try spawner.spawn(index: index)
            workers[index].pid = pid
            workers[index].startedAt = Self.now()
            logger.info("worker \(index) started: pid \(pid)")
        } catch {
            logger.error("\(error); retrying in \(workers[index].backoff) s")
            scheduleRestart(index)
        }
    }

    /// Collects every worker that ended, and schedules the unexpected ones to start again.
    private func reap() {
        while true {
            var status: Int32 = 0
            let pid = waitpid(-1, &status, WNOHANG)
            guard pid > 0 else { return }
            guard let index = workers.firstIndex(where: { $0.pid == pid }) else { continue }
            workers[index].pid = nil
            let how = Self.describe(status)
            if stopping {
                logger.info("worker \(index) (pid \(pid)) \(how)")
                continue
            }
            restarts += 1
            if Self.now() - workers[index].startedAt >= 60 { workers[index].backoff = 1 }
            logger.error("worker \(index) (pid \(pid)) \(how); restart \(restarts), in \(workers[index].backoff) s")
            scheduleRestart(index)
        }
    }

    private func scheduleRestart(_ index: Int) {
        workers[index].restartAt = Self.now() + workers[index].backoff
        workers[index].backoff = min(workers[index].backoff * 2, 30)
    }

    private static func describe(_ status: Int32) -> String {
        let signal = status & 0x7F
        if signal == 0 { return "exited with status \((status >> 8) & 0xFF)" }
        return "was killed by signal \(signal)"
    }

    private static func now() -> Double { Double(MonotonicClock.nanoseconds()) / 1e9 }
}
