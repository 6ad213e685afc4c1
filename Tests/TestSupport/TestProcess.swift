import Foundation
import Glibc

/// The one child-process wrapper of every test target: a built executable (`gateway`, `bin_test`) or
/// a script, its stdout and stderr written to files and read back while it runs (files, not pipes,
/// so a chatty child never blocks on a full pipe), and stopped on every way out of a test.
/// `GatewayProcess` is its older name.
public final class TestProcess: @unchecked Sendable {  // the files are the only shared state
    public let process = Process()
    public let stdoutPath: String
    public let stderrPath: String
    /// Files this object made for itself (no `logs` directory given), removed with it.
    private let ownDirectory: URL?
    /// How much of stdout `readLine` has handed out.
    private var stdoutRead = 0

    /// Starts `executable`. `environment` nil inherits the test's; the default, none, keeps a
    /// GATEWAY_ variable of the caller's from leaking in. Output goes to NAME.out and NAME.err in
    /// `logs` (or in a directory of its own).
    public init(_ executable: URL, _ arguments: [String], environment: [String: String]? = [:],
                logs directory: URL? = nil, name: String? = nil) throws {
        let name = name ?? executable.lastPathComponent
        ownDirectory = directory == nil
            ? FileManager.default.temporaryDirectory.appendingPathComponent("test-process-\(UUID().uuidString)") : nil
        let directory = directory ?? ownDirectory!
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        stdoutPath = directory.appendingPathComponent("\(name).out").path
        stderrPath = directory.appendingPathComponent("\(name).err").path
        // The handles below need the files to exist; a failure shows as their error.
        _ = FileManager.default.createFile(atPath: stdoutPath, contents: nil)
        _ = FileManager.default.createFile(atPath: stderrPath, contents: nil)
        process.executableURL = executable
        process.arguments = arguments
        if let environment { process.environment = environment }
        process.standardOutput = try FileHandle(forWritingTo: URL(fileURLWithPath: stdoutPath))
        process.standardError = try FileHandle(forWritingTo: URL(fileURLWithPath: stderrPath))
        try process.run()
    }

    /// `GatewayProcess(arguments)`: the built `gateway` executable.
    public convenience init(_ arguments: [String], environment: [String: String] = [:]) throws {
        try self.init(Self.built("gateway"), arguments, environment: environment)
    }

    deinit {
        kill()
        if let ownDirectory { try? FileManager.default.removeItem(at: ownDirectory) }
    }

    /// An executable SwiftPM built next to the test bundle.
    public static func built(_ name: String) throws -> URL {
        var directory = Bundle.main.bundleURL
        // On macOS the bundle is a directory inside the build directory; on Linux, the build directory itself.
        if directory.pathExtension == "xctest" { directory.deleteLastPathComponent() }
        let binary = directory.appendingPathComponent(name)
        guard FileManager.default.isExecutableFile(atPath: binary.path) else {
            throw TestProcessError("no \(name) executable at \(binary.path): build it first (swift build --product \(name))")
        }
        return binary
    }

    /// `name` on the PATH, or nil.
    public static func onPath(_ name: String) -> URL? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":") where !dir.isEmpty {
            let candidate = "\(dir)/\(name)"
            if access(candidate, X_OK) == 0 { return URL(fileURLWithPath: candidate) }
        }
        return nil
    }

    public var stdout: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
    public var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }
    /// The log so far (stderr).
    public var log: String { stderr }

    /// Polls stderr for `text` for at most `seconds`; false if it never came or the process ended first.
    public func waitForLog(_ text: String, seconds: Double) -> Bool {
        let deadline = Date(timeIntervalSinceNow: seconds)
        while Date() < deadline {
            if stderr.contains(text) { return true }
            if !process.isRunning { return stderr.contains(text) }
            usleep(20_000)
        }
        return false
    }

    /// Waits (up to `seconds`) until `needle` appears `count` times in the log; returns the log.
    @discardableResult
    public func waitFor(_ needle: String, count: Int = 1, seconds: Double = 30) throws -> String {
        let deadline = Date().addingTimeInterval(seconds)
        while Date() < deadline {
            let log = self.log
            if log.components(separatedBy: needle).count - 1 >= count { return log }
            usleep(20_000)
        }
        throw TestProcessError("\(needle) x\(count) not logged in \(seconds) s:\n\(log)")
    }

    /// The port in the first log line with `prefix` followed by digits.
    public func waitForPort(prefix: String) throws -> Int {
        let log = try waitFor(prefix)
        let after = log.components(separatedBy: prefix)[1]
        guard let port = Int(after.prefix { $0.isNumber }) else { throw TestProcessError("no port after \(prefix)") }
        return port
    }

    /// The pid a master logged for worker `index` ("worker 2 started: pid 123"), the first other than `after`.
    public func waitForPid(of index: Int, after old: Int32? = nil) throws -> Int32 {
        let needle = "worker \(index) started: pid "
        let deadline = Date().addingTimeInterval(30)
        while Date() < deadline {
            let pids = log.components(separatedBy: needle).dropFirst().compactMap { Int32($0.prefix { $0.isNumber }) }
            if let pid = pids.last(where: { $0 != old }) { return pid }
            usleep(20_000)
        }
        throw TestProcessError("\(needle) not logged:\n\(log)")
    }

    /// The next line of stdout, or nil when none arrives within `timeout` seconds.
    public func readLine(timeout: Double) -> String? {
        let deadline = Date().addingTimeInterval(timeout)
        while true {
            let bytes = Array(stdout.utf8)
            if let newline = bytes[stdoutRead...].firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: bytes[stdoutRead..<newline], as: UTF8.self)
                stdoutRead = newline + 1
                return line
            }
            if Date() >= deadline { return nil }
            usleep(10_000)
        }
    }

    /// Waits at most until `deadline` for the process to exit.
    public func waitForExit(by deadline: Date) -> Bool {
        while process.isRunning && Date() < deadline { usleep(20_000) }
        return !process.isRunning
    }

    /// SIGTERM, then the exit status (SIGKILL after `seconds`).
    @discardableResult
    public func stop(seconds: Double = 20) -> Int32 {
        if process.isRunning { process.terminate() }
        if !waitForExit(by: Date().addingTimeInterval(seconds)) { Glibc.kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// For every way out of a test: nothing it started outlives it.
    public func kill() {
        guard process.isRunning else { return }
        Glibc.kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}

public struct TestProcessError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// The gateway process tests' names for them.
public typealias GatewayProcess = TestProcess
public typealias GatewayProcessError = TestProcessError
