import GatewayAdmin
import GatewayCore
import Glibc
import Logging

/// Runs one gateway (the four-thread engine) on the main thread's behalf: starts it on listeners of
/// its own, of the process it takes over, or of its master; then until SIGINT or SIGTERM, or the end
/// of a restart's drain, logs a stats line every `statsInterval` seconds and re-reads the config
/// file on SIGHUP; then stops it gracefully.
enum GatewayRunner {
    /// A worker's listening sockets, set by its master: "3,4".
    static let inheritedEnvironment = "GATEWAY_WORKER_LISTEN_FDS"

    static func run(_ start: Settings, logger: Logger, signals: ProcessSignals, service: ServiceManager,
                    takeOver: String?, connectionsFrom: String? = nil,
                    reread: @escaping @Sendable () throws(ConfigError) -> Settings) {
        var config = start.config
        let where_ = config.listenAddresses.map(\.description).joined(separator: ",")
        let handover: TakeOver?
        do {
            handover = try takeOver.flatMap { path throws(HandoverError) in try TakeOver.ask(path, logger: logger) }
        } catch {
            failStartup("cannot take over: \(error)", code: 1)
        }
        if let path = start.controlSocket, handover == nil, connectionsFrom == nil {
            do throws(HandoverError) { try ControlServer.checkFree(path) } catch { failStartup("\(error)", code: 1) }
        }
        let inherited = handover?.listeners ?? inheritedListeners()
        if handover != nil { steerToFirst(inherited, logger: logger) }
        // A successor runs beside the process it replaces: a different node to the tiers above.
        let generation = handover?.generation ?? 0
        config.nodeInstance |= generation << 8
        let gateway: Gateway
        do {
            gateway = try Gateway(config: config, logger: logger)
            try gateway.start(inheriting: inherited)
        } catch let error as SocketError {
            failStartup("cannot listen on \(where_): \(String(cString: strerror(error.code)))", code: 1)
        } catch {
            failStartup("cannot start on \(where_): \(error)", code: 1)
        }
        if let handover {
            // The old process stops accepting on STARTED: only once this one takes the connections.
            let deadline = ContinuousClock.now + .seconds(15)
            while !gateway.isAccepting, ContinuousClock.now < deadline { usleep(10_000) }
            if start.handover == .connections {
                handover.startedMoving(into: gateway, logger: logger)
            } else {
                handover.started(logger: logger)
            }
        }
        let movedIn = connectionsFrom.map { takeConnections(from: $0, into: gateway, logger: logger) } ?? false
        let reloads = Reloads(gateway: gateway, settings: start, logger: logger, reread: reread)
        // Once the old process drains, a failure here must not stop this one too: it is logged instead.
        let successor = handover != nil || movedIn
        var control: ControlServer?
        if let path = start.controlSocket {
            do {
                control = try ControlServer(path: path, successor: successor, generation: generation,
                                            listeners: gateway.listenerDescriptors, drainSeconds: config.drainTimeout,
                                            logger: logger, gateway: gateway, handoverSeconds: start.handoverTimeout) {
                    gateway.drainForRestart()
                }
                control?.start()
            } catch {
                if successor {
                    logger.error("serving without a control socket (no later hot restart): \(error)")
                } else {
                    gateway.stop()
                    failStartup("\(error)", code: 1)
                }
            }
        }
        var (admin, adminPort) = startAdmin(start, gateway: gateway, reloads: reloads, logger: logger,
                                            successor: successor)
        let clock = ContinuousClock()
        let started = clock.now
        var ports: [Int] = []
        for port in gateway.ports where !ports.contains(port) { ports.append(port) }
        let portList = ports.map(String.init).joined(separator: ",")
        logger.notice("listening on \(config.listenAddresses[0].host):\(portList) \(start.summary)")
        WorkerReport.ready(adminPort: adminPort).send()
        service.ready("serving on \(config.listenAddresses[0].host):\(portList)")

        var last = (stats: gateway.stats(), time: started)
        // The wait is sliced so that the end of a restart's drain is noticed within a quarter second.
        let slice = Duration.milliseconds(250)
        while true {
            let settings = reloads.settings
            let due = last.time + .seconds(settings.statsInterval)
            let signal = signals.wait(timeout: settings.statsInterval > 0 ? min(slice, due - clock.now) : slice)
            if let signal {
                if signal == SIGINT || signal == SIGTERM {
                    logger.notice("\(ProcessSignals.name(signal)): stopping")
                    break
                }
                if signal == SIGHUP {
                    logger.notice("SIGHUP: re-reading the settings")
                    service.reloading()
                    _ = reloads.reload()
                    service.reloaded()
                }
                if signal == SIGUSR2 {
                    logger.notice("SIGUSR2: draining for a restart")
                    gateway.drainForRestart()
                }
            }
            // Handed over (control socket, or SIGUSR2 from a master): the successor needs the admin port.
            if admin != nil, control?.handedOver == true || signal == SIGUSR2 {
                admin?.stop()
                admin = nil
                logger.notice("admin endpoint closed for the process taking over")
            }
            service.tick()
            if gateway.hasStopped {
                logger.notice(gateway.failure == nil ? "drained: stopping" : "failed: stopping")
                break
            }
            let now = clock.now
            guard settings.statsInterval > 0, now >= due else { continue }
            let stats = gateway.stats()
            let line = StatsSummary.line(from: last.stats, to: stats, seconds: (now - last.time).seconds)
            logger.info("stats: \(line)")
            service.status(line)
            last = (stats, now)
        }

        service.stopping()
        admin?.stop()
        if control?.handedOver == true { WorkerReport.handedOver.send() }  // a master must not restart it
        control?.stop()
        gateway.stop()
        let uptime = (clock.now - started).seconds
        logger.notice("stopped after \(Int(uptime)) s: \(StatsSummary.line(from: GatewayStats(), to: gateway.stats(), seconds: uptime))")
        if let failure = gateway.failure { failStartup("stopped by a failure: \(failure)", code: 1) }
    }

    /// `--admin` (its address was checked with the settings). A failed bind stops start-up with exit 1;
    /// a successor, whose predecessor closes its admin endpoint only once handed over, retries for
    /// five seconds and then serves without one.
    private static func startAdmin(_ settings: Settings, gateway: Gateway, reloads: Reloads, logger: Logger,
                                   successor: Bool) -> (AdminServer?, Int) {
        guard let address = settings.admin else { return (nil, 0) }
        let deadline = ContinuousClock.now + .seconds(successor ? 5 : 0)
        while true {
            do {
                let server = try AdminServer(host: address.host, port: address.port, allowPublic: settings.adminPublic,
                                             control: AdminBridge(gateway: gateway, reloads: reloads), logger: logger)
                let port = try server.start()
                logger.notice("admin endpoint on \(address.host):\(port) (/metrics /healthz /stats /drain /reload)")
                return (server, port)
            } catch {
                if ContinuousClock.now < deadline {
                    usleep(100_000)
                    continue
                }
                guard successor else {
                    gateway.stop()
                    failStartup("\(error)", code: 1)
                }
                logger.error("serving without the admin endpoint: \(error)")
                return (nil, 0)
            }
        }
    }

    /// A worker of a master that took over: its predecessor of the same index, at `path`, hands it its
    /// connections (the listeners it offers are the master's, which this worker has already: closed).
    /// True if one was there.
    private static func takeConnections(from path: String, into gateway: Gateway, logger: Logger) -> Bool {
        do {
            guard let predecessor = try TakeOver.ask(path, logger: logger) else { return false }
            for fd in predecessor.listeners { close(fd) }
            predecessor.startedMoving(into: gateway, logger: logger)
            return true
        } catch {
            logger.error("no connections taken from \(path): \(error)")
            return false
        }
    }

    /// A single process taking over from a master gets several sockets per address: new connections go
    /// to the first of each (ReusePortGroup.steer), and it accepts from all of them, so none queued is lost.
    private static func steerToFirst(_ listeners: [Int32], logger: Logger) {
        do throws(SocketError) {
            for group in try ReusePortGroup.byAddress(listeners) where group.count > 1 {
                try ReusePortGroup.steer(group[0], count: 1)
            }
        } catch {
            failStartup("cannot take over: \(error)", code: 1)
        }
    }

    /// The listeners a master passed down (a worker), or none.
    private static func inheritedListeners() -> [Int32] {
        guard let text = getenv(inheritedEnvironment).map({ String(cString: $0) }) else { return [] }
        unsetenv(inheritedEnvironment)
        return text.split(separator: ",").compactMap { Int32($0) }
    }
}

extension Duration {
    var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
