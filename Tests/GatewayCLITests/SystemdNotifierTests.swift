import Foundation
@testable import GatewayCLI
import Glibc
import XCTest

final class SystemdNotifierTests: XCTestCase {
    /// A datagram socket bound where a notifier will send, as systemd's would be.
    private final class Listener {
        let descriptor: Int32
        let path: String?

        /// `name` is a path, or an abstract name after '@'.
        init(name: String) throws {
            descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
            path = name.hasPrefix("@") ? nil : name
            var address = sockaddr_un()
            address.sun_family = sa_family_t(AF_UNIX)
            var bytes = Array(name.utf8)
            if path == nil { bytes[0] = 0 }
            withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
            let length = socklen_t(MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + bytes.count)
            let bound = withUnsafePointer(to: &address) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) }
            }
            guard descriptor >= 0, bound == 0 else {
                throw POSIXError(POSIXErrorCode(rawValue: errno) ?? .EINVAL)
            }
            // A missing datagram fails the test in a second instead of hanging it.
            var timeout = timeval(tv_sec: 1, tv_usec: 0)
            setsockopt(descriptor, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        }

        /// The next datagram's text, or nil after the timeout.
        func receive() -> String? {
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = buffer.withUnsafeMutableBytes { recvfrom(descriptor, $0.baseAddress, $0.count, 0, nil, nil) }
            return count < 0 ? nil : String(decoding: buffer[..<count], as: UTF8.self)
        }

        deinit {
            close(descriptor)
            if let path { unlink(path) }
        }
    }

    private static func socketPath() -> String {
        // sun_path holds 108 bytes, so not the (possibly long) $TMPDIR.
        "/tmp/gateway-notify-\(UUID().uuidString.prefix(8)).sock"
    }

    private static func notifier(_ name: String) throws -> SystemdNotifier {
        try XCTUnwrap(SystemdNotifier(environment: ["NOTIFY_SOCKET": name]))
    }

    func testEveryMessageArrivesAsItsText() throws {
        let path = Self.socketPath()
        let listener = try Listener(name: path)
        let notifier = try Self.notifier(path)

        XCTAssertTrue(notifier.ready(status: "listening on 127.0.0.1:7000"))
        XCTAssertEqual(listener.receive(), "READY=1\nSTATUS=listening on 127.0.0.1:7000")
        XCTAssertTrue(notifier.readyAfterReload())
        XCTAssertEqual(listener.receive(), "READY=1")
        XCTAssertTrue(notifier.stopping())
        XCTAssertEqual(listener.receive(), "STOPPING=1")
        XCTAssertTrue(notifier.status("draining 12 connections"))
        XCTAssertEqual(listener.receive(), "STATUS=draining 12 connections")
        XCTAssertTrue(notifier.watchdog())
        XCTAssertEqual(listener.receive(), "WATCHDOG=1")
        XCTAssertTrue(notifier.mainPID(4242))
        XCTAssertEqual(listener.receive(), "MAINPID=4242")
    }

    func testReloadingCarriesTheMonotonicClock() throws {
        let path = Self.socketPath()
        let listener = try Listener(name: path)
        let notifier = try Self.notifier(path)

        func monotonicMicroseconds() -> Int64 {
            var now = timespec()
            clock_gettime(CLOCK_MONOTONIC, &now)
            return Int64(now.tv_sec) * 1_000_000 + Int64(now.tv_nsec) / 1_000
        }
        let before = monotonicMicroseconds()
        XCTAssertTrue(notifier.reloading())
        let after = monotonicMicroseconds()

        let lines = try XCTUnwrap(listener.receive()).split(separator: "\n")
        XCTAssertEqual(lines.count, 2)
        XCTAssertEqual(lines.first, "RELOADING=1")
        let stamp = try XCTUnwrap(lines.last?.split(separator: "=", maxSplits: 1))
        XCTAssertEqual(stamp.first, "MONOTONIC_USEC")
        let microseconds = try XCTUnwrap(Int64(stamp.last ?? ""))
        XCTAssert((before...after).contains(microseconds), "\(microseconds) not in \(before)...\(after)")
    }

    func testAbstractSocket() throws {
        let name = "@gateway-notify-\(UUID().uuidString)"
        let listener = try Listener(name: name)
        XCTAssertTrue(try Self.notifier(name).watchdog())
        XCTAssertEqual(listener.receive(), "WATCHDOG=1")
    }

    func testNoSocketNoNotifier() {
        XCTAssertNil(SystemdNotifier(environment: [:]))
        XCTAssertNil(SystemdNotifier(environment: ["NOTIFY_SOCKET": ""]))
        XCTAssertNil(SystemdNotifier(environment: ["NOTIFY_SOCKET": "relative.sock"]))
        XCTAssertNil(SystemdNotifier(environment: ["NOTIFY_SOCKET": "/" + String(repeating: "x", count: 200)]))
    }

    func testSendWithNobodyListeningFails() throws {
        XCTAssertFalse(try Self.notifier(Self.socketPath()).ready(status: "unheard"))
    }

    func testWatchdogInterval() throws {
        let path = Self.socketPath()
        func interval(_ environment: [String: String]) throws -> Duration? {
            try XCTUnwrap(SystemdNotifier(environment: environment.merging(["NOTIFY_SOCKET": path]) { $1 }))
                .watchdogInterval
        }
        XCTAssertEqual(try interval(["WATCHDOG_USEC": "8000000"]), .seconds(8))
        XCTAssertEqual(try interval(["WATCHDOG_USEC": "8000000", "WATCHDOG_PID": "\(getpid())"]), .seconds(8))
        XCTAssertNil(try interval(["WATCHDOG_USEC": "8000000", "WATCHDOG_PID": "\(getpid() + 1)"]))
        XCTAssertNil(try interval([:]))
        XCTAssertNil(try interval(["WATCHDOG_USEC": "0"]))
        XCTAssertNil(try interval(["WATCHDOG_USEC": "soon"]))
    }

    func testRemoveFromEnvironment() {
        for name in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] { setenv(name, "1", 1) }
        SystemdNotifier.removeFromEnvironment()
        for name in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] { XCTAssertNil(getenv(name), name) }
    }

    /// `systemd-analyze verify` on the repository's unit, with an ExecStart that exists
    /// (verify checks the binary) and nothing else changed.
    func testUnitVerifies() throws {
        let analyze = "/usr/bin/systemd-analyze"
        guard FileManager.default.isExecutableFile(atPath: analyze) else {
            throw XCTSkip("no \(analyze)")
        }
        let repository = URL(fileURLWithPath: #filePath)
            .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        let unit = try String(contentsOf: repository.appendingPathComponent("deploy/gateway.service"), encoding: .utf8)
        let execStart = "ExecStart=/usr/local/bin/gateway "
        XCTAssert(unit.contains("\n" + execStart), "the unit no longer starts /usr/local/bin/gateway")
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("gateway-unit-\(UUID())")
        try FileManager.default.createDirectory(at: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: directory) }
        let copy = directory.appendingPathComponent("gateway.service")
        try unit.replacingOccurrences(of: execStart, with: "ExecStart=/bin/true ")
            .write(to: copy, atomically: true, encoding: .utf8)

        let process = Process()
        process.executableURL = URL(fileURLWithPath: analyze)
        process.arguments = ["verify", copy.path]
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()

        XCTAssertEqual(process.terminationStatus, 0, text)
        // Other lines can be about the host's own units, which are not ours to fix.
        let ours = text.split(separator: "\n").filter { $0.contains("gateway") }
        XCTAssertEqual(ours, [], text)
    }

    /// The built gateway under a fake systemd: READY once it listens, RELOADING then READY around
    /// SIGHUP, WATCHDOG pings at half of WATCHDOG_USEC, STOPPING at SIGTERM, then exit 0.
    func testGatewayNotifiesAroundItsLife() throws {
        let path = Self.socketPath()
        let listener = try Listener(name: path)
        var directory = Bundle.main.bundleURL
        if directory.pathExtension == "xctest" { directory.deleteLastPathComponent() }
        let process = Process()
        process.executableURL = directory.appendingPathComponent("gateway")
        process.arguments = ["--port", "0", "--stats-interval", "0", "--log-level", "warning"]
        // No WATCHDOG_PID: the watchdog is then for whichever process reads it.
        process.environment = ["NOTIFY_SOCKET": path, "WATCHDOG_USEC": "400000"]
        try process.run()
        defer { if process.isRunning { process.terminate() } }
        var messages: [String] = []
        func next(_ prefix: String) -> String? {
            for _ in 0..<20 {
                guard let m = listener.receive() else { continue }
                messages.append(m)
                if m.hasPrefix(prefix) { return m }
            }
            return nil
        }
        let ready = try XCTUnwrap(next("READY=1"), "no READY in \(messages)")
        XCTAssertTrue(ready.contains("STATUS=serving on 127.0.0.1:"))
        XCTAssertNotNil(next("WATCHDOG=1"), "no watchdog ping in \(messages)")
        kill(process.processIdentifier, SIGHUP)
        let reloading = try XCTUnwrap(next("RELOADING=1"), "no RELOADING in \(messages)")
        XCTAssertTrue(reloading.contains("MONOTONIC_USEC="))
        XCTAssertNotNil(next("READY=1"), "no READY after the reload in \(messages)")
        kill(process.processIdentifier, SIGTERM)
        XCTAssertNotNil(next("STOPPING=1"), "no STOPPING in \(messages)")
        process.waitUntilExit()
        XCTAssertEqual(process.terminationStatus, 0)
    }
}
