import XCTest
@testable import GatewayCore
@testable import BinTestKit

/// Quiet, bounded client settings against a local test server. Most tests end on --count
/// long before --duration; the generous duration and grace only keep a slow machine from
/// turning into a failure.
func testSettings(port: Int, _ configure: (inout ClientSettings) -> Void = { _ in }) -> ClientSettings {
    var settings = ClientSettings()
    settings.port = port
    settings.conns = 1
    settings.threads = 1
    settings.pipeline = 4
    settings.duration = 5
    settings.grace = 2
    settings.quiet = true
    configure(&settings)
    return settings
}

/// Gateways started by a test (echo handler, errors-only log, a fast clock), stopped at tearDown in
/// reverse order.
class GatewayTestCase: XCTestCase {
    var running: [Gateway] = []

    override func tearDown() {
        for g in running.reversed() { g.stop() }
        running = []
    }

    func gateway(listen: [GatewayConfig.ListenAddress],
                 _ configure: (inout GatewayConfig) -> Void = { _ in }) throws -> Gateway {
        var config = GatewayConfig()
        config.listen = listen
        config.tickMilliseconds = 10
        configure(&config)
        var logger = ServerMode.makeLogger()
        logger.logLevel = .error
        let g = try Gateway(config: config, handler: EchoHandler(), logger: logger)
        try g.start()
        running.append(g)
        return g
    }
}
