@testable import BinTestKit

/// Short, quiet, bounded client settings against a local test server.
func testSettings(port: Int, _ configure: (inout ClientSettings) -> Void = { _ in }) -> ClientSettings {
    var settings = ClientSettings()
    settings.port = port
    settings.conns = 1
    settings.threads = 1
    settings.pipeline = 4
    settings.duration = 1
    settings.grace = 0.5
    settings.quiet = true
    configure(&settings)
    return settings
}
