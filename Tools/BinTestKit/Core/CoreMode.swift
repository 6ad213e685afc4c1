import Glibc
import GatewayCore
import LinkCore
import Logging

/// `bin_test core`: an echo core server on the gateway's own engine (docs/LINK.md, upper side).
public enum CoreMode {
    /// Builds and starts the engine with an `EchoCore`; the caller stops the gateway.
    /// A push schedule starts here: its first push is due `settings.push.after` seconds on.
    public static func start(_ settings: CoreSettings, logger: Logger = ServerMode.makeLogger()) throws
        -> (Gateway, EchoCore) {
        var base = GatewayConfig()
        base.host = settings.host
        base.port = settings.port
        base.poller = settings.poller
        if settings.push.rate > 0 {
            // Pushes leave on the clock ticks: a 1 ms tick keeps them within a millisecond of their schedule.
            base.tickMilliseconds = 1
            // A tick's pushes go into each link's send ring at once (100 a tick at 100,000/s); a push
            // that finds no room waits for a later tick, so a deep ring keeps them on schedule. A core
            // holds links only: few slots.
            base.ringCapacity = 4096
            base.maxConnections = 1024
        }
        let core = EchoCore(delayMicroseconds: settings.delayMicroseconds, failEvery: settings.failEvery,
                            push: settings.push)
        let server = CoreServer(handler: core, node: settings.nodeID, clientMaxFrame: base.maxFrame, logger: logger,
                                moveTimeoutMilliseconds: settings.moveTimeoutMilliseconds)
        core.server = server
        let gateway = try Gateway(config: CoreServer.config(base, clientMaxFrame: base.maxFrame),
                                  handler: server, logger: logger)
        try gateway.start()
        return (gateway, core)
    }

    /// Runs until SIGINT or SIGTERM, then prints the counts. Returns the exit status.
    static func run(_ settings: CoreSettings) -> Int32 {
        let stop = StopSignal.block()
        let gateway: Gateway, core: EchoCore
        do {
            (gateway, core) = try start(settings)
        } catch {
            StandardError.write("bin_test: core failed to start: \(error)\n")
            return 1
        }
        let push = settings.push
        let pushing = push.rate == 0 ? "" : "; pushing \(push.rate)/s to \(push.scope.rawValue)"
            + (push.scope == .all ? "" : " 1...\(push.uids)") + " from \(push.after) s"
        StandardError.write(
            "bin_test core: echo core on \(settings.host):\(gateway.port)\(pushing); SIGINT or SIGTERM stops it\n")
        _ = stop.wait()
        gateway.stop()
        print("opened=\(core.opened) closed=\(core.closed) data=\(core.dataFrames.load(ordering: .relaxed))"
            + " pushes=\(core.pushes) moving=\(core.movingAsked) moved=\(core.moved)"
            + " moved_unknown=\(core.server?.movedUnknown ?? 0) moves_lost=\(core.server?.movesLost ?? 0)")
        return 0
    }
}
