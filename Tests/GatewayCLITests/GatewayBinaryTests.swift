import Foundation
import Testing

/// Runs the built `gateway` executable, which SwiftPM puts next to the test bundle.
@Suite struct GatewayBinaryTests {
    static func binary() throws -> URL {
        var directory = Bundle.main.bundleURL
        // On macOS the bundle is a directory inside the build directory; on Linux, the build directory itself.
        if directory.pathExtension == "xctest" { directory.deleteLastPathComponent() }
        let binary = directory.appendingPathComponent("gateway")
        try #require(FileManager.default.isExecutableFile(atPath: binary.path),
                     "no gateway executable at \(binary.path): build it first (swift build --product gateway)")
        return binary
    }

    static func run(_ arguments: [String], environment: [String: String] = [:]) throws
        -> (status: Int32, stdout: String, stderr: String) {
        let process = Process()
        process.executableURL = try binary()
        process.arguments = arguments
        // Only what the case sets, so a GATEWAY_ variable in the caller's environment cannot leak in.
        process.environment = environment
        let out = Pipe(), err = Pipe()
        process.standardOutput = out
        process.standardError = err
        try process.run()
        let stdout = out.fileHandleForReading.readDataToEndOfFile()
        let stderr = err.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        return (process.terminationStatus, String(decoding: stdout, as: UTF8.self), String(decoding: stderr, as: UTF8.self))
    }

    @Test(arguments: [
        (["--max-connections", "0"], [:], "gateway: invalid max_connections '0': allowed 1...50000000\n"),
        (["--port", "7000"], ["GATEWAY_POLLER": "kqueue"], "gateway: invalid poller 'kqueue': allowed epoll|poll\n"),
        (["--no-such-flag"], [:], "gateway: Unknown option '--no-such-flag'\n"),
    ] as [([String], [String: String], String)])
    func badSettingExitsWithOneLineAndStatus2(arguments: [String], environment: [String: String], message: String) throws {
        let result = try Self.run(arguments, environment: environment)
        #expect(result.status == 2)
        #expect(result.stderr == message)
        #expect(result.stdout.isEmpty)
    }

    /// SIGTERM once it listens: a graceful stop and exit status 0.
    @Test(.timeLimit(.minutes(1)))
    func sigtermStopsCleanly() throws {
        let process = Process()
        process.executableURL = try Self.binary()
        process.arguments = ["--port", "0", "--stats-interval", "0"]
        process.environment = [:]
        let err = Pipe()
        process.standardError = err
        try process.run()
        // Wait for the start-up line, so that the stop path is what gets tested.
        var log = ""
        while !log.contains("stats_interval=") {
            let chunk = err.fileHandleForReading.availableData
            try #require(!chunk.isEmpty, "gateway exited before listening: \(log)")
            log += String(decoding: chunk, as: UTF8.self)
        }
        kill(process.processIdentifier, SIGTERM)
        log += String(decoding: err.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(process.terminationReason == .exit)
        #expect(process.terminationStatus == 0)
        #expect(log.contains("SIGTERM: stopping"))
    }
}
