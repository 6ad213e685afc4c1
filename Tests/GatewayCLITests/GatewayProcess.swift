import Foundation
import Testing

/// The built `gateway` executable running in the background, its stderr collected as it comes,
/// so a test can wait for a log line.
final class GatewayProcess: @unchecked Sendable {  // `text` is guarded by `lock`
    let process = Process()
    private let lock = NSLock()
    private var text = ""

    init(_ arguments: [String], environment: [String: String] = [:]) throws {
        var directory = Bundle.main.bundleURL
        if directory.pathExtension == "xctest" { directory.deleteLastPathComponent() }
        process.executableURL = directory.appendingPathComponent("gateway")
        process.arguments = arguments
        process.environment = environment
        let err = Pipe()
        process.standardError = err
        err.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            guard let self, !data.isEmpty else { return }
            self.lock.withLock { self.text += String(decoding: data, as: UTF8.self) }
        }
        try process.run()
    }

    var log: String { lock.withLock { text } }

    /// Waits (up to `seconds`) until `needle` appears `count` times in the log; returns the log.
    @discardableResult
    func waitFor(_ needle: String, count: Int = 1, seconds: Double = 30) throws -> String {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            let log = self.log
            if log.components(separatedBy: needle).count - 1 >= count { return log }
            usleep(20_000)
        }
        throw GatewayProcessError("\(needle) x\(count) not logged in \(seconds) s:\n\(log)")
    }

    /// The port in the first log line with `prefix` followed by digits.
    func waitForPort(prefix: String) throws -> Int {
        let log = try waitFor(prefix)
        let after = log.components(separatedBy: prefix)[1]
        guard let port = Int(after.prefix { $0.isNumber }) else { throw GatewayProcessError("no port after \(prefix)") }
        return port
    }

    /// The pid a master logged for worker `index` ("worker 2 started: pid 123"), the first other than `after`.
    func waitForPid(of index: Int, after old: Int32? = nil) throws -> Int32 {
        let needle = "worker \(index) started: pid "
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            let pids = log.components(separatedBy: needle).dropFirst().compactMap { Int32($0.prefix { $0.isNumber }) }
            if let pid = pids.last(where: { $0 != old }) { return pid }
            usleep(20_000)
        }
        throw GatewayProcessError("\(needle) not logged:\n\(log)")
    }

    /// SIGTERM, then the exit status (SIGKILL after 20 s).
    @discardableResult
    func stop() -> Int32 {
        if process.isRunning { process.terminate() }
        let deadline = Date().addingTimeInterval(20)
        while process.isRunning, Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        return process.terminationStatus
    }
}

struct GatewayProcessError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
