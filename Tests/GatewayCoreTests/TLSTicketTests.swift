import Foundation
import Glibc
import XCTest
@testable import GatewayCore

/// Session tickets across processes and hours (docs/TLS.md, "Tickets"): keys derived from a shared
/// secret (`tls_ticket_key_file`) resume sessions on every gateway that has it, rotate each epoch, and
/// a ticket is accepted for one epoch after the one it was issued in. Epochs are moved by hand, far
/// past the wall clock's (which only ever moves them forward), so no test depends on the hour.
final class TLSTicketTests: XCTestCase {
    private static let shared = Result { try TLSFixtures() }
    private var fixtures: TLSFixtures!
    private var gateways: [Gateway] = []

    override func setUpWithError() throws {
        try super.setUpWithError()
        fixtures = try Self.shared.get()
    }

    override func tearDown() {
        for gateway in gateways { gateway.stop() }
        gateways = []
        super.tearDown()
    }

    private func config(keyFile: String?) -> (inout GatewayConfig) -> Void {
        let server = fixtures.pair("server")
        return { c in
            c.listen = [.init(host: "127.0.0.1", port: 0, tls: true)]
            c.tls.pairs = [TLSSettings.Pair(certificate: server.certificate, key: server.key)]
            c.tls.ticketKeyFile = keyFile
        }
    }

    /// A gateway with one TLS listener; its port.
    private func start(keyFile: String?, epoch: UInt64? = nil) throws -> Int {
        let gateway = try startGateway(.epoll, config(keyFile: keyFile))
        gateways.append(gateway)
        if let epoch { gateway.ticketKeys!.advance(to: epoch) }
        return gateway.ports[0]
    }

    /// A key file of `count` random bytes (or these bytes).
    private func keyFile(_ name: String, count: Int = 48, bytes: [UInt8]? = nil) throws -> String {
        let path = fixtures.path(name)
        let data = Data(bytes ?? (0..<count).map { _ in UInt8.random(in: 0...255) })
        try data.write(to: URL(fileURLWithPath: path))
        return path
    }

    private func resume(from port: Int, on other: Int, version: String = "1.3") throws -> String {
        try fixtures.probe(["resume", "--port", "\(port)", "--resume-port", "\(other)", "--ca",
                            fixtures.path("ca.pem"), "--version", version]).line
    }

    func testSessionsResumeOnAnotherGatewayWithTheSameKeyFileOnly() throws {
        let secret = try keyFile("shared.key")
        let (a, b, alone) = (try start(keyFile: secret), try start(keyFile: secret), try start(keyFile: nil))
        for version in ["1.3", "1.2"] {
            XCTAssertEqual(try resume(from: a, on: b, version: version), "resumed=True TLSv\(version)")
            XCTAssertEqual(try resume(from: b, on: a, version: version), "resumed=True TLSv\(version)")
            XCTAssertEqual(try resume(from: a, on: alone, version: version), "resumed=False TLSv\(version)")
        }
        let stats = gateways.map { $0.stats() }
        XCTAssertEqual(stats[0].tlsResumed + stats[1].tlsResumed, 4)
        XCTAssertEqual(stats[2].tlsResumed, 0)
    }

    func testATicketIsAcceptedForOneEpochAfterItsOwn() throws {
        let secret = try keyFile("rotating.key")
        let epoch = TicketKeys.epoch(at: time(nil)) + 1000
        let issuing = try start(keyFile: secret, epoch: epoch)
        let next = try start(keyFile: secret, epoch: epoch + 1)
        let later = try start(keyFile: secret, epoch: epoch + 2)
        XCTAssertEqual(try resume(from: issuing, on: issuing), "resumed=True TLSv1.3")
        XCTAssertEqual(try resume(from: issuing, on: next), "resumed=True TLSv1.3", "the previous epoch's key")
        XCTAssertEqual(try resume(from: issuing, on: later), "resumed=False TLSv1.3", "two epochs on: a full handshake")
        XCTAssertEqual(try resume(from: next, on: later), "resumed=True TLSv1.3")
        // The process itself rotates: its own ticket from two epochs back no longer resumes.
        XCTAssertEqual(gateways[0].ticketKeys!.epoch, epoch)
        gateways[2].ticketKeys!.advance(to: epoch)  // never backwards
        XCTAssertEqual(gateways[2].ticketKeys!.epoch, epoch + 2)
    }

    func testAReloadReadsTheKeyFileAgainAndABadOneIsRefusedByName() throws {
        let secret = try keyFile("reloaded.key")
        let a = try start(keyFile: secret), b = try start(keyFile: secret)
        XCTAssertEqual(try resume(from: a, on: b), "resumed=True TLSv1.3")
        _ = try keyFile("reloaded.key")  // a new secret in place
        try gateways[1].reconfigure(gateways[1].config)
        XCTAssertEqual(try resume(from: a, on: b), "resumed=False TLSv1.3", "b has the new secret, a the old")
        try gateways[0].reconfigure(gateways[0].config)
        XCTAssertEqual(try resume(from: a, on: b), "resumed=True TLSv1.3")

        var config = gateways[1].config
        for (name, count) in [("short.key", 16), ("long.key", 65)] {
            config.tls.ticketKeyFile = try keyFile(name, count: count)
            XCTAssertThrowsError(try gateways[1].reconfigure(config), name) { error in
                XCTAssertEqual((error as? ConfigError)?.key, "tls_ticket_key_file", "\(error)")
            }
        }
        XCTAssertEqual(try resume(from: a, on: b), "resumed=True TLSv1.3", "the refused files changed nothing")
    }
}
