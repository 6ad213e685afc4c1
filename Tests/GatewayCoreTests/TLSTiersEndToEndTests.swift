import Foundation
import Glibc
import XCTest
@testable import BinTestKit
@_spi(Benchmarks) @testable import GatewayCore
import LinkCore

/// Links over TLS (docs/TLS.md): clients -> access -> aggregation -> core with TLS on every hop, each
/// upstream requiring the link's client certificate (mTLS) and each link verifying its upstream's.
final class TLSTiersEndToEndTests: ForwardingTestCase {
    private static let shared = Result { try TLSFixtures() }

    private func tlsListener(_ f: TLSFixtures, _ c: inout GatewayConfig) {
        c.listen = [.init(host: "127.0.0.1", port: 0, tls: true)]
        c.tls.pairs = [TLSSettings.Pair(certificate: f.pair("server").certificate, key: f.pair("server").key)]
        c.tls.clientCA = f.path("ca.pem")
    }

    private func tlsLinks(_ f: TLSFixtures, to port: Int, certificate: Bool, _ c: inout GatewayConfig) {
        c.upstream = [.init(host: "127.0.0.1", port: port, tls: true)]
        c.upstreamCA = f.path("ca.pem")
        if certificate {
            (c.upstreamCert, c.upstreamKey) = f.pair("client")
        }
    }

    /// The echo core of `bin_test core` behind a TLS listener that requires link certificates.
    private func startTLSCore(_ f: TLSFixtures) throws -> (Gateway, EchoCore) {
        var base = GatewayConfig()
        base.port = 0
        tlsListener(f, &base)
        let core = EchoCore(delayMicroseconds: 0, failEvery: 0, push: CoreSettings().push)
        let server = CoreServer(handler: core, node: 9, clientMaxFrame: base.maxFrame, logger: log.logger)
        let gateway = try Gateway(config: CoreServer.config(base, clientMaxFrame: base.maxFrame), handler: server,
                                  logger: log.logger)
        try gateway.start()
        running.append(gateway)
        return (gateway, core)
    }

    func testThreeTiersWithTLSOnEveryHop() throws {
        let f = try Self.shared.get()
        let (coreGateway, core) = try startTLSCore(f)
        let aggregation = try startAggregation(upstream: []) { c in
            self.tlsListener(f, &c)
            self.tlsLinks(f, to: coreGateway.port, certificate: true, &c)
            c.nodeID = 500
        }
        waitFor("aggregation's TLS links up") { aggregation.stats().linksUp == 2 }
        let access = try startAccess(upstream: []) { c in
            self.tlsListener(f, &c)
            c.tls.clientCA = nil  // clients need no certificate
            self.tlsLinks(f, to: aggregation.port, certificate: true, &c)
            c.nodeID = 77
        }
        waitFor("access's TLS links up") { access.stats().linksUp == 2 }
        let clients = try (0..<8).map { _ in try TLSTestClient(port: access.port, ca: f.path("ca.pem")) }
        for round in 0..<3 {
            for (i, c) in clients.enumerated() {
                let frames = (0..<20).flatMap { n in
                    TestClient.frame(seq: UInt32(round * 100 + n), uid: UInt32(i), bodySize: (n * 397) % 5000)
                }
                try c.send(frames)
                XCTAssertEqual(c.receive(frames.count), frames, "client \(i) round \(round)")
            }
        }
        XCTAssertEqual(core.opened, 8)
        XCTAssertEqual(access.stats().forwardedUp, 8 * 3 * 20)
        XCTAssertEqual(aggregation.stats().forwardedDown, 8 * 3 * 20)
        // Links and clients are TLS handshakes too: 8 clients + 2 links at access, 2 links at the aggregation.
        XCTAssertEqual(access.stats().tlsHandshakes, 8 + 2)
        XCTAssertEqual(aggregation.stats().tlsHandshakes, 2 + 2)
        XCTAssertEqual(coreGateway.stats().tlsHandshakes, 2)
    }

    /// An upstream that requires link certificates refuses a node without one (counted
    /// tls_certificate there); the node's links stay down and keep retrying.
    func testALinkWithoutACertificateIsRefused() throws {
        let f = try Self.shared.get()
        let (coreGateway, _) = try startTLSCore(f)
        let access = try startAccess(upstream: []) { c in
            self.tlsLinks(f, to: coreGateway.port, certificate: false, &c)
            c.upstreamLinks = 1
        }
        waitFor("refused at the core") { coreGateway.stats().closes(.tlsCertificate) >= 2 }
        XCTAssertEqual(access.stats().linksUp, 0)
    }

    /// A link verifies its upstream: a certificate its CA did not sign keeps the link down, counted.
    func testALinkRefusesAnUpstreamItCannotVerify() throws {
        let f = try Self.shared.get()
        let (coreGateway, _) = try startTLSCore(f)
        let access = try startAccess(upstream: []) { c in
            self.tlsLinks(f, to: coreGateway.port, certificate: true, &c)
            c.upstreamCA = f.path("rogue.pem")
            c.upstreamLinks = 1
        }
        waitFor("refused by the link") { coreGateway.stats().closes(.tlsCertificate) >= 3 }
        XCTAssertEqual(access.stats().linksUp, 0)
        XCTAssertEqual(coreGateway.stats().tlsHandshakes, 0)
        let down = log.messages(atLeast: .warning).filter { $0.contains("down: closed (tls_certificate)") }
        XCTAssertEqual(down.count, 1, "logged once, then retried quietly with back-off: \(down)")
    }
}
