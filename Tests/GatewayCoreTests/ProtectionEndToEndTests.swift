import Foundation
import Glibc
import XCTest
@_spi(Benchmarks) @testable import GatewayCore

/// Limits at accept and per connection (issue 10, items 3 and 4): per-address
/// counts and rates from several 127.0.0.0/8 addresses, the listener's rate, allow
/// and deny lists, floods; every refusal counted by cause, a witness always served.
final class ProtectionEndToEndTests: XCTestCase {
    private func witnessServed(_ witness: TestClient, _ label: String, file: StaticString = #filePath,
                               line: UInt = #line) {
        XCTAssertTrue(witness.echoes(TestClient.frame(seq: 1, bodySize: 40)), "witness: \(label)", file: file, line: line)
    }

    private func admitted(_ c: TestClient) -> Bool { c.echoes(TestClient.frame(seq: 2, bodySize: 8)) }

    func testMaxConnsPerIPCountsEachAddressApart() throws {
        let gateway = try startGateway(.epoll) { $0.maxConnsPerIP = 3 }
        defer { gateway.stop() }
        let witness = try TestClient(port: gateway.port, source: "127.0.0.9")
        let first = try (0..<3).map { _ in try TestClient(port: gateway.port, source: "127.0.0.2") }
        for c in first { XCTAssertTrue(admitted(c)) }
        let fourth = try TestClient(port: gateway.port, source: "127.0.0.2")
        XCTAssertTrue(fourth.isClosedByPeer(), "the fourth from one address is refused")
        XCTAssertTrue(waitUntil { gateway.stats().closes(.perAddress) == 1 })
        XCTAssertTrue(admitted(try TestClient(port: gateway.port, source: "127.0.0.3")), "another address is not")
        first[0].close()
        let again = waitUntil {  // once the close is detached, the address has a place again
            guard let c = try? TestClient(port: gateway.port, source: "127.0.0.2") else { return false }
            return self.admitted(c)
        }
        XCTAssertTrue(again, "a freed place is reused")
        witnessServed(witness, "per address")
    }

    func testConnectionRatesPerAddressAndForTheListener() throws {
        for (perAddress, listener) in [(5, 0), (0, 5)] {
            let gateway = try startGateway(.epoll) {
                $0.connRatePerIP = perAddress
                $0.acceptRate = listener
            }
            defer { gateway.stop() }
            var admittedCount = 0
            for _ in 0..<20 {
                let c = try TestClient(port: gateway.port, source: "127.0.0.4")
                if admitted(c) { admittedCount += 1 }
            }
            let cause: CloseCause = perAddress > 0 ? .addressRate : .acceptRate
            XCTAssertGreaterThanOrEqual(admittedCount, 5, "\(cause): a second's burst is admitted")
            XCTAssertLessThan(admittedCount, 20, "\(cause): the rest refused")
            XCTAssertTrue(waitUntil { gateway.stats().closes(cause) == UInt64(20 - admittedCount) }, "\(cause) counted")
            if perAddress > 0 {
                XCTAssertTrue(admitted(try TestClient(port: gateway.port, source: "127.0.0.5")), "other addresses pass")
            }
        }
    }

    func testAllowAndDenyLists() throws {
        let gateway = try startGateway(.epoll) {
            $0.allow = [CIDR(parsing: "127.0.0.0/29")!, CIDR(parsing: "::1")!]
            $0.deny = [CIDR(parsing: "127.0.0.6")!]
        }
        defer { gateway.stop() }
        XCTAssertTrue(admitted(try TestClient(port: gateway.port, source: "127.0.0.2")), "allowed")
        XCTAssertTrue(try TestClient(port: gateway.port, source: "127.0.0.6").isClosedByPeer(), "denied first")
        XCTAssertTrue(try TestClient(port: gateway.port, source: "127.0.0.9").isClosedByPeer(), "not allowed")
        XCTAssertTrue(waitUntil { gateway.stats().closes(.denied) == 2 })
    }

    func testAFloodingConnectionIsClosedAndLoggedTheWitnessServed() throws {
        for (frames, bytes) in [(50, 0), (0, 20_000)] {
            let log = LogRecorder()
            let gateway = try startGateway(.epoll, log: log) {
                $0.floodFramesPerSecond = frames
                $0.floodBytesPerSecond = bytes
            }
            defer { gateway.stop() }
            let witness = try TestClient(port: gateway.port)
            let flooder = try TestClient(port: gateway.port)
            var burst: [UInt8] = []
            for n in 0..<400 { burst += TestClient.frame(seq: UInt32(n), bodySize: 100) }
            try flooder.send(burst)
            XCTAssertTrue(flooder.isClosedByPeer(), "closed for flood (\(frames) frames/s, \(bytes) bytes/s)")
            XCTAssertTrue(waitUntil { gateway.stats().closes(.flood) == 1 })
            XCTAssertTrue(log.messages(atLeast: .warning).contains { $0.contains("for flood") })
            witnessServed(witness, "after a flood")
        }
    }
}

/// The CIDR parser and the lists' matching, IPv4 and IPv6.
final class AddressRulesTests: XCTestCase {
    private func v6(_ text: String) -> PeerAddress {
        var raw = (UInt64(0), UInt64(0))
        _ = withUnsafeMutableBytes(of: &raw) { inet_pton(AF_INET6, text, $0.baseAddress) }
        return PeerAddress(family: 6, port: 1, bytes: raw)
    }

    private func v4(_ text: String) -> PeerAddress { PeerAddress(ipv4: inet_addr(text), port: 1) }

    func testParsing() {
        for good in ["10.0.0.0/8", "127.0.0.1", "0.0.0.0/0", "::1", "2001:db8::/32", "::/0", "fe80::1/128"] {
            XCTAssertNotNil(CIDR(parsing: good), good)
        }
        for bad in ["", "10.0.0.0/33", "10.0.0/8", "::1/129", "2001:db8::/-1", "10.0.0.0/", "10.0.0.0/8/9",
                    "host", "1.2.3.4/ 8", "::g", "1.2.3.4/٣"] {
            XCTAssertNil(CIDR(parsing: bad), bad)
        }
        XCTAssertEqual(CIDR(parsing: "10.1.2.3/8")?.description, "10.0.0.0/8", "masked to its prefix")
        XCTAssertEqual(CIDR(parsing: "2001:db8:1::5/32")?.description, "2001:db8::/32")
    }

    func testMatching() {
        let rules = AddressRules(allow: [CIDR(parsing: "10.0.0.0/8")!, CIDR(parsing: "2001:db8::/32")!],
                                 deny: [CIDR(parsing: "10.9.0.0/16")!, CIDR(parsing: "2001:db8:bad::/48")!])
        XCTAssertTrue(rules.admits(v4("10.1.2.3")))
        XCTAssertFalse(rules.admits(v4("10.9.1.1")), "deny wins")
        XCTAssertFalse(rules.admits(v4("11.0.0.1")), "not allowed")
        XCTAssertTrue(rules.admits(v6("2001:db8:1::1")))
        XCTAssertFalse(rules.admits(v6("2001:db8:bad::1")))
        XCTAssertFalse(rules.admits(v6("::1")))
        XCTAssertFalse(AddressRules(allow: [CIDR(parsing: "::/0")!], deny: []).admits(v4("1.2.3.4")),
                       "an IPv6 network never matches an IPv4 peer")
        XCTAssertTrue(AddressRules(allow: [], deny: []).admits(v6("::1")))
    }

    func testIPv6PeersAreCountedPerSlash64() {
        var limits = AddressLimits(maxPerAddress: 2, ratePerAddress: 0, acceptRate: 0)
        XCTAssertNil(limits.admit(v6("2001:db8:0:1::1"), now: 0))
        XCTAssertNil(limits.admit(v6("2001:db8:0:1::2"), now: 0))
        XCTAssertEqual(limits.admit(v6("2001:db8:0:1:ffff::3"), now: 0), .perAddress, "same /64")
        XCTAssertNil(limits.admit(v6("2001:db8:0:2::1"), now: 0), "another /64")
        limits.closed(v6("2001:db8:0:1::1"))
        XCTAssertNil(limits.admit(v6("2001:db8:0:1::9"), now: 0))
    }
}

/// IPv6, dual stack and several listen addresses (issue 10, item 7).
final class ListenAddressTests: XCTestCase {
    func testIPv4AndIPv6ListenersServeAndTheListsSeeEachFamily() throws {
        let log = LogRecorder()
        let gateway = try startGateway(.epoll, log: log) {
            $0.listen = [GatewayConfig.ListenAddress(host: "127.0.0.1", port: 0),
                         GatewayConfig.ListenAddress(host: "::1", port: 0)]
            $0.maxConnsPerIP = 1
        }
        defer { gateway.stop() }
        XCTAssertEqual(gateway.ports.count, 2)
        let v4 = try TestClient(port: gateway.ports[0])
        let v6 = try TestClient(port: gateway.ports[1], host: "::1")
        XCTAssertTrue(v4.echoes(TestClient.frame(seq: 1, bodySize: 10)), "IPv4 listener")
        XCTAssertTrue(v6.echoes(TestClient.frame(seq: 2, bodySize: 10)), "IPv6 listener")
        let secondV6 = try TestClient(port: gateway.ports[1], host: "::1")
        XCTAssertTrue(secondV6.isClosedByPeer(), "the per-address limit counts ::1 on its own (a /64)")
        XCTAssertTrue(waitUntil { gateway.stats().closes(.perAddress) == 1 })
    }

    func testTheIPv6WildcardIsDualStackAndDenyListsMatchIPv6() throws {
        let gateway = try startGateway(.poll) {
            $0.listen = [GatewayConfig.ListenAddress(host: "::", port: 0)]
            $0.deny = [CIDR(parsing: "::1/128")!]
        }
        defer { gateway.stop() }
        let v4 = try TestClient(port: gateway.port)
        XCTAssertTrue(v4.echoes(TestClient.frame(seq: 1, bodySize: 10)), "IPv4 through the dual-stack wildcard")
        XCTAssertTrue(try TestClient(port: gateway.port, host: "::1").isClosedByPeer(), "::1 is denied")
        XCTAssertTrue(waitUntil { gateway.stats().closes(.denied) == 1 })
    }
}
