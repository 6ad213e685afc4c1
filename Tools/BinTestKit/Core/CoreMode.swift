import Glibc
import GatewayCore
import LinkCore
import Logging

/// `bin_test core`: an echo core server on the gateway's own engine (docs/LINK.md, upper side).
public enum CoreMode {
    /// Builds and starts the engine with an `EchoCore`; the caller stops the gateway.
    public static func start(_ settings: CoreSettings, logger: Logger = ServerMode.makeLogger()) throws
        -> (Gateway, EchoCore) {
        var base = GatewayConfig()
        base.host = settings.host
        base.port = settings.port
        base.poller = settings.poller
        let core = EchoCore(delayMicroseconds: settings.delayMicroseconds, failEvery: settings.failEvery)
        let server = CoreServer(handler: core, node: settings.nodeID, clientMaxFrame: base.maxFrame, logger: logger)
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
        StandardError.write(
            "bin_test core: echo core on \(settings.host):\(gateway.port); SIGINT or SIGTERM stops it\n")
        _ = stop.wait()
        gateway.stop()
        print("opened=\(core.opened) closed=\(core.closed) data=\(core.dataFrames.load(ordering: .relaxed))")
        return 0
    }
}
