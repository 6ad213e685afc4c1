import Glibc
import GatewayCore
import Logging

/// `bin_test server`: the project's own engine with the echo handler, the same code `gateway` runs.
public enum ServerMode {
    /// Builds and starts the engine; the caller stops it.
    public static func start(_ settings: ServerSettings, logger: Logger = makeLogger()) throws -> Gateway {
        let config = settings.config
        try config.validate()
        let gateway = try Gateway(config: config, handler: EchoHandler(), logger: logger)
        try gateway.start()
        return gateway
    }

    /// Engine logs go to stderr, beside bin_test's own messages.
    public static func makeLogger() -> Logger {
        Logger(label: "bin_test") { StreamLogHandler.standardError(label: $0) }
    }

    /// Runs until SIGINT or SIGTERM, then stops the engine. Returns the exit status.
    static func run(_ settings: ServerSettings) -> Int32 {
        let logger = makeLogger()
        let stop = StopSignal.block()
        let gateway: Gateway
        do {
            gateway = try start(settings, logger: logger)
        } catch {
            StandardError.write("bin_test: server failed to start: \(error)\n")
            return 1
        }
        StandardError.write("bin_test server: echo on \(settings.host):\(gateway.port) (poller \(settings.poller.rawValue)); SIGINT or SIGTERM stops it\n")
        let received = stop.wait()
        StandardError.write("bin_test server: signal \(received), stopping\n")
        gateway.stop()
        return 0
    }
}
