import XCTest
import GatewayCore
@testable import BinTestKit

final class ArgumentTests: XCTestCase {
    private func client(_ arguments: [String]) throws -> ClientSettings {
        guard case .client(let settings) = try Invocation.parse(arguments: arguments) else {
            throw UsageError(message: "not a client invocation: \(arguments)")
        }
        return settings
    }

    private func rejected(_ arguments: [String], file: StaticString = #filePath, line: UInt = #line) -> SettingsError? {
        do {
            _ = try Invocation.parse(arguments: arguments)
            XCTFail("accepted \(arguments)", file: file, line: line)
        } catch let error as SettingsError {
            return error
        } catch {
            XCTFail("\(arguments): \(error)", file: file, line: line)
        }
        return nil
    }

    func testLegacyClientFormMatchesLongForm() throws {
        let legacy = try Invocation.parse(arguments: ["0", "127.0.0.1", "7001", "100", "2"])
        let long = try Invocation.parse(arguments: ["client", "--host", "127.0.0.1", "--port", "7001",
                                                    "--conns", "100", "--threads", "2"])
        XCTAssertEqual(legacy, long)
        let settings = try client(["0", "127.0.0.1", "7001", "100", "2"])
        XCTAssertEqual(settings.conns, 100)
        XCTAssertEqual(settings.threads, 2)
        XCTAssertEqual(settings.pipeline, 16)
        XCTAssertEqual(settings.size, 512)
        XCTAssertEqual(settings.duration, 10)
        XCTAssertEqual(settings.mode, .load)
    }

    func testLegacyClientFormWithDefaultsAndTrailingFlags() throws {
        XCTAssertEqual(try client(["0", "127.0.0.1", "7001"]),
                       try client(["client", "--host", "127.0.0.1", "--port", "7001"]))
        let settings = try client(["0", "127.0.0.1", "7001", "3", "--json", "--size", "64"])
        XCTAssertEqual(settings.conns, 3)
        XCTAssertEqual(settings.threads, 2)
        XCTAssertTrue(settings.json)
        XCTAssertEqual(settings.size, 64)
    }

    func testLegacyServerFormMatchesLongForm() throws {
        let legacy = try Invocation.parse(arguments: ["1", "127.0.0.1", "7001"])
        XCTAssertEqual(legacy, try Invocation.parse(arguments: ["server", "--host", "127.0.0.1", "--port", "7001"]))
        guard case .server(let settings) = legacy else { return XCTFail("\(legacy)") }
        XCTAssertEqual(settings.config.port, 7001)
        XCTAssertEqual(settings.config.poller, .epoll)
    }

    func testSourcesAreAListOfAddresses() throws {
        XCTAssertEqual(try client(["client"]).sources, [])
        XCTAssertEqual(try client(["client", "--source", "127.0.0.2,127.0.0.3,localhost"]).sources,
                       ["127.0.0.2", "127.0.0.3", "127.0.0.1"])
    }

    func testModeDependentDefaults() throws {
        let pingpong = try client(["client", "--mode", "pingpong"])
        XCTAssertEqual(pingpong.conns, 1)
        XCTAssertEqual(pingpong.threads, 1)
        XCTAssertEqual(pingpong.inFlightCap, 1)
        let load = try client(["client"])
        XCTAssertEqual(load.conns, 32)
        XCTAssertEqual(load.threads, 2)
        XCTAssertEqual(load.inFlightCap, 16)
    }

    func testBadValuesNameTheFlagAndTheRange() {
        let cases: [([String], String, String)] = [
            (["client", "--conns", "0"], "--conns", "1...100000"),
            (["client", "--conns", "many"], "--conns", "1...100000"),
            (["0", "127.0.0.1", "7001", "-5"], "--conns", "1...100000"),
            (["client", "--conns", "2", "--threads", "3"], "--threads", "1...2"),
            (["client", "--port", "70000"], "--port", "1...65535"),
            (["client", "--pipeline", "0"], "--pipeline", "1...4096"),
            (["client", "--size", "2000000"], "--size", "0...1048558"),
            (["client", "--duration", "0"], "--duration", "0.1...86400"),
            (["client", "--mode", "fast"], "--mode", "load, pingpong, connrate, idle"),
            (["client", "--mode", "idle", "--rate", "100"], "--rate", "only with --mode load or pingpong"),
            (["client", "--host", "example.com"], "--host", "IPv4"),
            (["client", "--source", "127.0.0.2,nowhere"], "--source", "IPv4"),
            (["client", "--source", ""], "--source", "IPv4"),
            (["server", "--poller", "kqueue"], "--poller", "epoll, poll"),
            (["1", "127.0.0.1", "99999"], "--port", "0...65535"),
        ]
        for (arguments, flag, allowed) in cases {
            guard let error = rejected(arguments) else { continue }
            XCTAssertEqual(error.flag, flag, "\(arguments)")
            XCTAssertTrue(error.description.contains(allowed), "\(arguments): \(error)")
            XCTAssertFalse(error.description.contains("\n"))
        }
    }

    func testBadCommandLinesExitWithStatusTwo() {
        XCTAssertEqual(BinTest.main(arguments: ["client", "--conns", "0"]), 2)
        XCTAssertEqual(BinTest.main(arguments: ["client", "--no-such-flag"]), 2)
        XCTAssertEqual(BinTest.main(arguments: []), 2)
    }

    func testHelpDocumentsBothForms() throws {
        guard case .help(let text) = try Invocation.parse(arguments: ["--help"]) else { return XCTFail() }
        XCTAssertTrue(text.contains("bin_test 1 HOST PORT"))
        XCTAssertTrue(text.contains("bin_test 0 HOST PORT [CONNS] [THREADS]"))
        XCTAssertTrue(text.contains("bin_test client --host H --port P"))
        guard case .help(let client) = try Invocation.parse(arguments: ["client", "--help"]) else { return XCTFail() }
        XCTAssertTrue(client.contains("--pipeline"))
        XCTAssertTrue(client.contains("Exit status"))
    }
}
