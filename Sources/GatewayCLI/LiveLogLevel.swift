import Logging
import Synchronization

/// The log level a reload changes for every logger at once: each handler asks it, rather than
/// keeping a copy made at start-up.
final class LiveLogLevel: Sendable {
    static let shared = LiveLogLevel()
    private let index = Atomic<Int>(Logger.Level.allCases.firstIndex(of: .info)!)

    var level: Logger.Level {
        get { Logger.Level.allCases[index.load(ordering: .relaxed)] }
        set { index.store(Logger.Level.allCases.firstIndex(of: newValue)!, ordering: .relaxed) }
    }
}

/// A handler whose level is LiveLogLevel's; the rest is the wrapped handler's.
struct LiveLevelLogHandler: LogHandler {
    var wrapped: any LogHandler

    var logLevel: Logger.Level {
        get { LiveLogLevel.shared.level }
        set { LiveLogLevel.shared.level = newValue }
    }

    var metadata: Logger.Metadata {
        get { wrapped.metadata }
        set { wrapped.metadata = newValue }
    }

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { wrapped[metadataKey: key] }
        set { wrapped[metadataKey: key] = newValue }
    }

    func log(event: LogEvent) {
        wrapped.log(event: event)
    }
}
