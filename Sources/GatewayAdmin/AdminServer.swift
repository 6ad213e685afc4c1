import Dispatch
import Glibc
import Hummingbird
import Logging
import NIOCore
import NIOPosix
import ServiceLifecycle
import Synchronization

/// An admin address that may not be used: not an IP literal, not loopback without `--admin-public`,
/// a port out of range, or one that could not be bound.
public struct AdminAddressError: Error, Equatable, CustomStringConvertible {
    public let key = "admin"
    public let value: String
    public let allowed: String

    public var description: String { "invalid \(key) '\(value)': allowed \(allowed)" }
}

/// The admin endpoint (docs/ADMIN.md): an HTTP/1.1 server on one event-loop thread of its own,
/// which reads the engine's counters only when asked.
public final class AdminServer: @unchecked Sendable {  // start/stop are called from one controlling thread
    private let host: String
    private let port: Int
    /// host:port as written in messages ([host]:port for IPv6).
    private let address: String
    private let responder: AdminResponder
    private let logger: Logger
    private var running: Running?

    /// What `stop()` needs of a started server.
    private struct Running {
        let group: MultiThreadedEventLoopGroup
        let services: ServiceGroup
        let run: RunState
    }

    /// Throws AdminAddressError when host is not an IP literal, or not loopback (127.0.0.0/8, ::1)
    /// and allowPublic is false.
    public convenience init(host: String, port: Int, allowPublic: Bool, control: any AdminControl,
                            logger: Logger) throws {
        try self.init(host: host, port: port, allowPublic: allowPublic, service: GatewayAdminService(control: control),
                      logger: logger)
    }

    /// The same for any `AdminService` (a master's, for all its workers).
    public init(host: String, port: Int, allowPublic: Bool, service: any AdminService, logger: Logger) throws {
        try Self.validate(host: host, port: port, allowPublic: allowPublic)
        address = Self.describe(host, port)
        self.host = host
        self.port = port
        self.logger = logger
        responder = AdminResponder(service: service)
    }

    deinit { stop() }

    /// The loopback rule, for settings to check at start-up and reload as the server does.
    public static func validate(host: String, port: Int, allowPublic: Bool) throws(AdminAddressError) {
        let address = describe(host, port)
        guard let loopback = isLoopback(host) else {
            throw AdminAddressError(value: address, allowed: "an IP address such as 127.0.0.1 or ::1")
        }
        guard loopback || allowPublic else {
            throw AdminAddressError(
                value: address, allowed: "a loopback address (127.0.0.0/8 or ::1), or any with --admin-public")
        }
        guard (0...65535).contains(port) else {
            throw AdminAddressError(value: address, allowed: "a port in 0...65535")
        }
    }

    private static func describe(_ host: String, _ port: Int) -> String {
        host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)"
    }

    /// Whether an IP literal is loopback; nil when it is not an IP literal.
    static func isLoopback(_ host: String) -> Bool? {
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 {
            return UInt32(bigEndian: v4.s_addr) >> 24 == 127
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 {
            return withUnsafeBytes(of: &v6) { $0.elementsEqual([UInt8](repeating: 0, count: 15) + [1]) }
        }
        return nil
    }

    /// Binds (port 0 picks one) and serves on its own event-loop thread, off the gateway's four;
    /// returns the bound port once it listens. A bind failure throws AdminAddressError naming the address.
    public func start() throws -> Int {
        precondition(running == nil, "AdminServer.start() called twice")
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        let run = RunState()
        let app = Application(
            responder: responder,
            configuration: ApplicationConfiguration(address: .hostname(host, port: port)),
            onServerRunning: { run.bound(port: $0.localAddress?.port ?? 0) },
            eventLoopGroupProvider: .shared(group),
            logger: logger)
        var configuration = ServiceGroupConfiguration(services: [app], logger: logger)
        // A client that holds its request open must not hold up the gateway's stop.
        configuration.maximumGracefulShutdownDuration = .seconds(2)
        let services = ServiceGroup(configuration: configuration)
        let logger = logger
        Task.detached {
            do {
                try await services.run()
                run.ended(nil)
            } catch {
                // Before it was bound, start() reports the error; after, nobody would.
                if run.ended(error) { logger.error("admin endpoint stopped: \(error)") }
            }
        }
        switch run.waitUntilBound() {
        case .success(let bound):
            running = Running(group: group, services: services, run: run)
            return bound
        case .failure(let error):
            run.waitUntilEnded()
            try? group.syncShutdownGracefully()
            throw AdminAddressError(value: address, allowed: "an address this host can bind (\(error))")
        }
    }

    /// Stops accepting, lets requests in progress finish (2 s at most), and joins the thread.
    public func stop() {
        guard let running else { return }
        self.running = nil
        let services = running.services
        Task.detached { await services.triggerGracefulShutdown() }
        running.run.waitUntilEnded()
        try? running.group.syncShutdownGracefully()
    }
}

/// The serving task's progress, for the controlling thread to wait on.
private final class RunState: Sendable {
    private let outcome = Mutex<Result<Int, any Error>?>(nil)
    private let boundOrFailed = DispatchSemaphore(value: 0)
    private let finished = DispatchSemaphore(value: 0)

    func bound(port: Int) {
        outcome.withLock { $0 = .success(port) }
        boundOrFailed.signal()
    }

    /// The run is over; if it never bound, `error` is why. Returns whether it had been bound.
    @discardableResult
    func ended(_ error: (any Error)?) -> Bool {
        let wasBound = outcome.withLock { outcome in
            guard outcome == nil else { return true }
            outcome = .failure(error ?? CancellationError())
            return false
        }
        if !wasBound { boundOrFailed.signal() }
        finished.signal()
        return wasBound
    }

    func waitUntilBound() -> Result<Int, any Error> {
        boundOrFailed.wait()
        return outcome.withLock { $0! }
    }

    func waitUntilEnded() { finished.wait() }
}
