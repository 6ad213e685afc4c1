import Foundation
import Glibc
import XCTest
@testable import BinTestKit
@_spi(Benchmarks) @testable import GatewayCore

/// TLS listeners end to end (docs/TLS.md): Python's ssl module, `openssl s_client` and the CTLS
/// test client against the gateway; every bad input closes its one connection, counted by cause.
final class TLSEndToEndTests: XCTestCase {
    /// Made once for the class (each is a dozen openssl runs).
    private static let shared = Result { try TLSFixtures() }
    private var fixtures: TLSFixtures!
    private var gateway: Gateway?
    private let log = LogRecorder()

    override func setUpWithError() throws {
        try super.setUpWithError()
        fixtures = try Self.shared.get()
    }

    override func tearDown() {
        gateway?.stop()
        gateway = nil
        super.tearDown()
    }

    /// A gateway with a TLS listener (ports[0]) and a plain one (ports[1]); server (localhost) is
    /// the default pair, other (other.test) the one SNI may pick.
    private func start(_ poller: PollerKind = .epoll, _ configure: (inout GatewayConfig) -> Void = { _ in }) throws
        -> (tls: Int, plain: Int) {
        let fixtures = fixtures!
        let gateway = try startGateway(poller, log: log) { c in
            c.maxConnections = 512
            c.listen = [.init(host: "127.0.0.1", port: 0, tls: true), .init(host: "127.0.0.1", port: 0)]
            c.tls.pairs = ["server", "other"].map {
                TLSSettings.Pair(certificate: fixtures.pair($0).certificate, key: fixtures.pair($0).key)
            }
            configure(&c)
        }
        self.gateway = gateway
        return (gateway.ports[0], gateway.ports[1])
    }

    private func stop() -> GatewayStats {
        gateway!.stop()
        assertEveryCloseCounted(gateway!, "tls")
        return gateway!.stats()
    }

    private var ca: String { fixtures.path("ca.pem") }

    func testTLS13And12EchoByteForByteUpToMaxFrame() throws {
        for poller in PollerKind.allCases {
            let ports = try start(poller)
            for version in ["1.3", "1.2"] {
                let sizes = "18,100,5000,16384,16402,70000,\(GatewayConfig().maxFrame)"
                let result = try fixtures.probe(["echo", "--port", "\(ports.tls)", "--ca", ca, "--version", version,
                                                 "--sizes", sizes])
                XCTAssertTrue(result.ok, "\(poller) TLS \(version): \(result.line)")
                XCTAssertTrue(result.line.hasPrefix("ok TLSv\(version) cn=localhost"), "\(poller): \(result.line)")
            }
            let stats = stop()
            XCTAssertEqual(stats.tlsHandshakes, 2, "\(poller)")
            XCTAssertEqual(stats.tlsOwnRecords, 1, "\(poller): TLS 1.3 on the gateway's records, 1.2 on OpenSSL")
            XCTAssertEqual(stats.closes(.peer), 2, "\(poller): \(stats.closes)")
            gateway = nil
        }
    }

    func testSNIChoosesTheCertificateAndTheFirstPairIsTheDefault() throws {
        let ports = try start()
        let other = try fixtures.probe(["echo", "--port", "\(ports.tls)", "--ca", ca, "--sni", "other.test"])
        XCTAssertTrue(other.ok && other.line.contains("cn=other.test"), other.line)
        let byOpenSSL = try fixtures.sClient(["-connect", "127.0.0.1:\(ports.tls)", "-servername", "other.test",
                                              "-CAfile", ca, "-verify_return_error", "-brief"])
        XCTAssertTrue(byOpenSSL.contains("CN = other.test") || byOpenSSL.contains("CN=other.test"), byOpenSSL)
        XCTAssertTrue(byOpenSSL.contains("Verification: OK"), byOpenSSL)
        let unknown = try fixtures.sClient(["-connect", "127.0.0.1:\(ports.tls)", "-servername", "unknown.test",
                                            "-brief"])
        XCTAssertTrue(unknown.contains("CN = localhost") || unknown.contains("CN=localhost"), unknown)
        let none = try TLSTestClient(port: ports.tls, ca: ca)
        XCTAssertEqual(none.peerName, "localhost")
        XCTAssertTrue(none.echoes(TestClient.frame(seq: 1, bodySize: 300)))
    }

    func testVersionsBelowTLS12AreRefusedAndCounted() throws {
        let ports = try start()
        for version in ["1.0", "1.1"] {
            let result = try fixtures.probe(["refused", "--port", "\(ports.tls)", "--version", version])
            XCTAssertTrue(result.line.hasPrefix("refused"), "TLS \(version): \(result.line)")
        }
        XCTAssertEqual(stop().closes(.tlsVersion), 2)
    }

    func testClientCertificatesAreRequiredWithAClientCA() throws {
        let ports = try start { $0.tls.clientCA = self.fixtures.path("ca.pem") }
        let client = fixtures.pair("client")
        let accepted = try fixtures.probe(["echo", "--port", "\(ports.tls)", "--ca", ca, "--cert", client.certificate,
                                           "--key", client.key])
        XCTAssertTrue(accepted.ok, accepted.line)
        let rogue = fixtures.pair("rogue")
        for extra in [[], ["--cert", rogue.certificate, "--key", rogue.key]] {
            for version in ["1.3", "1.2"] {
                let refused = try fixtures.probe(["refused", "--port", "\(ports.tls)", "--ca", ca, "--version", version]
                                                 + extra)
                XCTAssertTrue(refused.line.hasPrefix("refused"), "\(extra) \(version): \(refused.line)")
            }
        }
        let stats = stop()
        XCTAssertEqual(stats.closes(.tlsCertificate), 4, "\(stats.closes)")
        XCTAssertEqual(stats.tlsHandshakes, 1)
    }

    /// PROXY protocol comes before the handshake, and the address it names meets the deny list before
    /// any TLS work; a ClientHello where the header belongs is refused as a bad header.
    func testAPROXYHeaderComesBeforeTheHandshakeAndItsAddressMeetsTheLists() throws {
        let ports = try start {
            $0.proxyProtocol = true
            $0.deny = [CIDR(parsing: "10.66.0.0/16")!]
        }
        let served = try fixtures.probe(["echo", "--port", "\(ports.tls)", "--ca", ca, "--proxy", "10.9.9.9"])
        XCTAssertTrue(served.ok, served.line)
        let denied = try fixtures.probe(["refused", "--port", "\(ports.tls)", "--ca", ca, "--proxy", "10.66.1.1"])
        XCTAssertTrue(denied.line.hasPrefix("refused"), denied.line)
        let headerless = try fixtures.probe(["refused", "--port", "\(ports.tls)", "--ca", ca])
        XCTAssertTrue(headerless.line.hasPrefix("refused"), headerless.line)
        let stats = stop()
        XCTAssertEqual(stats.closes(.denied), 1, "\(stats.closes)")
        XCTAssertEqual(stats.closes(.proxyHeader), 1, "\(stats.closes)")
        XCTAssertEqual(stats.tlsHandshakes, 1, "only the served client got as far as TLS")
    }

    func testSessionsResumeFromTickets() throws {
        let ports = try start()
        for version in ["1.3", "1.2"] {
            let result = try fixtures.probe(["resume", "--port", "\(ports.tls)", "--ca", ca, "--version", version])
            XCTAssertEqual(result.line, "resumed=True TLSv\(version)")
        }
        let stats = stop()
        XCTAssertEqual(stats.tlsResumed, 2)
        XCTAssertEqual(stats.tlsHandshakes, 4)
    }

    func testALPNSelectsTheServersPreference() throws {
        let ports = try start { $0.tls.alpn = ["gw/2", "gw/1"] }
        let chosen = try fixtures.probe(["echo", "--port", "\(ports.tls)", "--ca", ca, "--alpn", "gw/1,gw/2"])
        XCTAssertTrue(chosen.line.hasSuffix("alpn=gw/2"), chosen.line)
        let none = try fixtures.probe(["refused", "--port", "\(ports.tls)", "--ca", ca, "--alpn", "h2"])
        XCTAssertTrue(none.line.hasPrefix("refused"), none.line)
    }

    /// Each bad input closes its own connection with its own cause; a plaintext client and a TLS
    /// client opened before them still echo afterwards.
    func testBadInputClosesOnlyThatConnectionCountedByCause() throws {
        let ports = try start()
        let plainWitness = try TestClient(port: ports.plain)
        let tlsWitness = try TLSTestClient(port: ports.tls, ca: ca)
        XCTAssertTrue(plainWitness.echoes(TestClient.frame(seq: 1, bodySize: 10)))
        XCTAssertTrue(tlsWitness.echoes(TestClient.frame(seq: 1, bodySize: 10)))

        let plaintext = try TestClient(port: ports.tls)  // a frame where a ClientHello belongs
        try plaintext.send(TestClient.frame(seq: 1, bodySize: 10))
        XCTAssertTrue(plaintext.isClosedByPeer(), "plaintext frame to the TLS port")

        let garbage = try TestClient(port: ports.tls)  // a handshake record that is no ClientHello
        try garbage.send([0x16, 0x03, 0x01, 0x00, 0x10] + [UInt8](repeating: 0xFF, count: 16))
        XCTAssertTrue(garbage.isClosedByPeer(), "garbage ClientHello")

        let hello = try TestClient(port: ports.plain)  // a ClientHello is a frame of length 0x16030102..
        try hello.send([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xFC, 0x03, 0x03] + [UInt8](repeating: 0, count: 40))
        XCTAssertTrue(hello.isClosedByPeer(), "ClientHello to the plaintext port")

        let abandoned = try fixtures.probe(["abandon", "--port", "\(ports.tls)"])
        XCTAssertTrue(abandoned.ok && abandoned.line.hasPrefix("abandoned after"), abandoned.line)
        XCTAssertTrue(waitUntil(seconds: 10) { self.gateway!.stats().closes(.tlsHandshake) == 2 })

        XCTAssertTrue(plainWitness.echoes(TestClient.frame(seq: 2, bodySize: 1000)))
        XCTAssertTrue(tlsWitness.echoes(TestClient.frame(seq: 2, bodySize: 1000)))
        let stats = stop()
        XCTAssertEqual(stats.closes(.tlsPlaintext), 1, "\(stats.closes)")
        XCTAssertEqual(stats.closes(.tlsHandshake), 2, "garbage and abandoned: \(stats.closes)")
        XCTAssertEqual(stats.closes(.protocolError), 1, "\(stats.closes)")
    }

    /// 200 connections that say nothing and 200 that stop after their ClientHello are closed at
    /// tls_handshake_timeout (1 s) and counted; a TLS witness echoes before, during and after, and
    /// the handshake state of the half-finished ones is released.
    func testSilentAndHalfFinishedHandshakesAreClosedAtTheTimeout() throws {
        let ports = try start { $0.tlsHandshakeTimeout = 1 }
        let result = try fixtures.probe(["stall", "--port", "\(ports.tls)", "--ca", ca, "--silent", "200",
                                         "--half", "200", "--wait", "30"], timeout: 90)
        XCTAssertEqual(result.line, "closed silent=200 half=200 witness=ok")
        XCTAssertTrue(waitUntil(seconds: 10) { self.gateway!.stats().tlsHandshaking == 0 },
                      "half-open handshakes still hold state: \(gateway!.stats().tlsHandshaking)")
        let stats = stop()
        XCTAssertEqual(stats.closes(.tlsHandshakeTimeout), 400, "\(stats.closes)")
    }

    /// A reload reads the certificate files again: new connections get the new certificate while
    /// those open keep theirs; a bad certificate is refused by name and the running one stays.
    func testCertificatesRotateOnReloadWhileClientsStayConnected() throws {
        let ports = try start()
        let before = try TLSTestClient(port: ports.tls, ca: ca)
        XCTAssertEqual(before.peerName, "localhost")
        var config = gateway!.config
        config.tls.pairs[0] = TLSSettings.Pair(certificate: fixtures.pair("rotated").certificate,
                                               key: fixtures.pair("rotated").key)
        try gateway!.reconfigure(config)
        let after = try TLSTestClient(port: ports.tls, ca: ca)
        XCTAssertEqual(after.peerName, "rotated.localhost")
        XCTAssertTrue(before.echoes(TestClient.frame(seq: 1, bodySize: 2000)), "a client from before the reload")

        var bad = config
        bad.tls.pairs[0] = TLSSettings.Pair(certificate: fixtures.path("ca.key"), key: fixtures.pair("rotated").key)
        XCTAssertThrowsError(try gateway!.reconfigure(bad)) { error in
            XCTAssertEqual((error as? ConfigError)?.key, "tls_cert", "\(error)")
        }
        let kept = try TLSTestClient(port: ports.tls, ca: ca)
        XCTAssertEqual(kept.peerName, "rotated.localhost")
        XCTAssertTrue(kept.echoes(TestClient.frame(seq: 1, bodySize: 2000)))
        XCTAssertTrue(before.echoes(TestClient.frame(seq: 2, bodySize: 2000)))
        XCTAssertTrue(after.echoes(TestClient.frame(seq: 2, bodySize: 2000)))
    }

    /// Several clients pipeline frames of mixed sizes over TLS at once: Receive decrypts while Send
    /// encrypts on the same connections (TLS 1.3: the gateway's records, no lock). Every reply byte for byte.
    func testConcurrentTLSClientsPipelineByteForByte() throws {
        for poller in PollerKind.allCases {
            let ports = try start(poller)
            let failures = Failures()
            let ca = self.ca
            runThreads(6) { t in
                do {
                    let client = try TLSTestClient(port: ports.tls, ca: ca)
                    var random = TestRandom(seed: UInt64(t + 1))
                    for round in 0..<25 {
                        let frames = (0..<16).map { i in
                            TestClient.frame(seq: UInt32(round * 16 + i), uid: UInt32(t),
                                             bodySize: [0, 10, 500, 3000, 20_000][random.below(5)])
                        }
                        let batch = frames.flatMap { $0 }
                        try client.send(batch)
                        guard client.receive(batch.count) == batch else {
                            failures.add("client \(t) round \(round): replies differ")
                            return
                        }
                    }
                } catch {
                    failures.add("client \(t): \(error)")
                }
            }
            failures.assertNone("\(poller)")
            let stats = stop()
            XCTAssertEqual(stats.tlsHandshakes, 6)
            XCTAssertEqual(stats.tlsOwnRecords, 6)
            XCTAssertEqual(stats.tlsLockTakes, 0)
            gateway = nil
        }
    }

    /// Each TLS 1.3 suite the gateway's record layer runs, chosen by the client: frames of 18 B to max_frame,
    /// single and pipelined, byte for byte.
    func testEveryTLS13SuiteEchoesUpToMaxFrame() throws {
        let ports = try start()
        let suites = ["TLS_AES_128_GCM_SHA256", "TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256"]
        for suite in suites {
            let client = try TLSTestClient(port: ports.tls, ca: ca, suites: suite)
            XCTAssertEqual(client.cipherSuite, suite)
            let frames = [18, 5000, 16384, 16402, 70000, GatewayConfig().maxFrame].enumerated().map {
                TestClient.frame(seq: UInt32($0.offset), bodySize: $0.element - 18)
            }
            for frame in frames { XCTAssertTrue(client.echoes(frame), "\(suite): \(frame.count) B") }
            let all = frames.dropLast().flatMap { $0 }  // ~108 KB in flight: within the socket buffers
            try client.send(all)
            XCTAssertTrue(client.receive(all.count) == all, "\(suite): pipelined")
        }
        let stats = stop()
        XCTAssertEqual(stats.tlsOwnRecords, 3)
        XCTAssertEqual(stats.closes(.tlsRecord), 0)
    }

    /// KeyUpdate from the client, asking for ours or not, between echoes: the gateway's records follow the
    /// client's read key and, when asked, send a KeyUpdate of their own before the next reply and rotate.
    func testKeyUpdatesFromTheClientAreFollowedAndAnswered() throws {
        let ports = try start()
        let client = try TLSTestClient(port: ports.tls, ca: ca)
        client.countKeyUpdates()
        let asks = [true, false, true, true, false]
        for (round, ask) in asks.enumerated() {
            XCTAssertTrue(client.updateKeys(requestPeer: ask))
            let frame = TestClient.frame(seq: UInt32(round), bodySize: 20_000 * round + 10)
            XCTAssertTrue(client.echoes(frame), "round \(round)")
        }
        XCTAssertEqual(client.keyUpdatesReceived, asks.filter { $0 }.count)
        let stats = stop()
        XCTAssertEqual(stats.tlsOwnRecords, 1)
        XCTAssertEqual(stats.closes(.tlsRecord), 0)
    }

    /// Handshakes run on `tls_handshake_threads` threads of their own: clients handshaking at once all
    /// echo, and each handshake is counted once (the counter has one writer per handshake thread).
    func testHandshakesRunOnTheirOwnThreadsAndAreEachCounted() throws {
        let ports = try start { $0.tlsHandshakeThreads = 3 }
        // Each thread names itself once it runs.
        func handshakeThreads() -> [String] {
            let tasks = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task")) ?? []
            return tasks.compactMap {
                try? String(contentsOfFile: "/proc/self/task/\($0)/comm", encoding: .utf8)
                    .trimmingCharacters(in: .whitespacesAndNewlines)
            }.filter { $0.hasPrefix("gw-tls-") }.sorted()
        }
        XCTAssertTrue(waitUntil(seconds: 10) { handshakeThreads() == ["gw-tls-0", "gw-tls-1", "gw-tls-2"] },
                      "\(handshakeThreads())")
        let failures = Failures()
        let ca = self.ca
        runThreads(8) { t in
            for round in 0..<6 {
                do {
                    let client = try TLSTestClient(port: ports.tls, ca: ca)
                    if !client.echoes(TestClient.frame(seq: UInt32(round), uid: UInt32(t), bodySize: 300)) {
                        failures.add("client \(t) round \(round): no echo")
                    }
                } catch {
                    failures.add("client \(t) round \(round): \(error)")
                }
            }
        }
        failures.assertNone("handshakes on three threads")
        XCTAssertTrue(waitUntil(seconds: 10) { self.gateway!.stats().tlsHandshaking == 0 },
                      "handshakes still in progress: \(gateway!.stats().tlsHandshaking)")
        let stats = stop()
        XCTAssertEqual(stats.tlsHandshakes, 48)
    }

    /// `bin_test client --tls` in each mode against the TLS listener, every reply checked byte for byte;
    /// connrate's cycles are full handshakes.
    func testLoadToolSpeaksTLSInEveryMode() throws {
        let ports = try start()
        for mode in [ClientMode.load, .pingpong, .connrate, .idle] {
            var settings = ClientSettings()
            settings.port = ports.tls
            settings.mode = mode
            settings.conns = mode == .pingpong ? 1 : 8
            settings.threads = 2 > settings.conns ? 1 : 2
            settings.count = mode == .idle ? nil : 200
            settings.duration = mode == .idle ? 0.2 : 30
            settings.tls = true
            settings.tlsCA = ca
            settings.tlsSNI = "localhost"
            settings.quiet = true
            let report = ClientRun.run(settings)
            XCTAssertEqual(report.messages, [], "\(mode)")
            XCTAssertEqual(report.exitCode, 0, "\(mode)")
            XCTAssertGreaterThan(report.replies, 0, "\(mode)")
            if mode == .connrate { XCTAssertEqual(report.connections, 200) }
        }
        let stats = stop()
        XCTAssertEqual(stats.tlsHandshakes, 8 + 1 + 200 + 8)
    }
}
