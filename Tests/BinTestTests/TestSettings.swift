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
