import GatewayCore
import Glibc
import Logging

/// Runs a gateway on the main thread until SIGINT or SIGTERM, logging a stats
/// line every `statsInterval` seconds, then stops it gracefully.
enum GatewayRunner {
    static func run(_ settings: Settings, logger: Logger, signals: StopSignals) {
        let config = settings.config
        let gateway: Gateway
        do {
            gateway = try Gateway(config: config, logger: logger)
            try gateway.start()
        } catch let error as SocketError {
            failStartup("cannot listen on \(config.host):\(config.port): \(String(cString: strerror(error.code)))", code: 1)
        } catch {
            failStartup("cannot start on \(config.host):\(config.port): \(error)", code: 1)
        }
        let clock = ContinuousClock()
        let started = clock.now
        logger.notice("listening on \(config.host):\(gateway.port) \(settings.summary)")

        var last = (stats: gateway.stats(), time: started)
        let interval = Duration.seconds(settings.statsInterval)
        while true {
            let due = last.time + interval
            if let signal = signals.wait(timeout: settings.statsInterval > 0 ? due - clock.now : nil) {
                logger.notice("\(StopSignals.name(signal)): stopping")
                break
            }
            let now = clock.now
            // A wait can end early (EINTR); log only when the interval is really over.
            guard settings.statsInterval > 0, now >= due else { continue }
            let stats = gateway.stats()
            logger.info("stats: \(StatsSummary.line(from: last.stats, to: stats, seconds: (now - last.time).seconds))")
            last = (stats, now)
        }

        gateway.stop()
        let uptime = (clock.now - started).seconds
        logger.notice("stopped after \(Int(uptime)) s: \(StatsSummary.line(from: GatewayStats(), to: gateway.stats(), seconds: uptime))")
    }
}

extension Duration {
    var seconds: Double {
        Double(components.seconds) + Double(components.attoseconds) / 1e18
    }
}
