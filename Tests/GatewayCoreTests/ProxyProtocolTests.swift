import Foundation
import Glibc
import XCTest
@_spi(Benchmarks) @testable import GatewayCore

/// `--proxy-protocol`: the listener reads a PROXY v1/v2 header first, and the
/// lists and limits apply to the client it names; tested directly and behind a
/// real HAProxy (`send-proxy-v2`).
final class ProxyProtocolTests: XCTestCase {
    private func v1(_ address: String, port: Int = 5555) -> [UInt8] {
        Array("PROXY TCP4 \(address) 127.0.0.1 \(port) 7000\r\n".utf8)
    }

    private func v2(_ a: UInt8, _ b: UInt8, _ c: UInt8, _ d: UInt8) -> [UInt8] {
        ProxyHeader.v2Signature + [0x21, 0x11, 0, 12, a, b, c, d, 127, 0, 0, 1, 0x15, 0xB3, 0x1B, 0x58]
    }

    private func served(_ c: TestClient) -> Bool { c.echoes(TestClient.frame(seq: 3, bodySize: 30)) }

    func testHeadersGoodSplitBadAndMissing() throws {
        for poller in PollerKind.allCases {
            let gateway = try startGateway(poller) {
                $0.proxyProtocol = true
                $0.proxyTimeout = 1
                $0.maxConnsPerIP = 1
                $0.deny = [CIDR(parsing: "10.66.0.0/16")!]
            }
            defer { gateway.stop() }
            let first = try TestClient(port: gateway.port)
            try first.send(v1("10.9.9.9") + TestClient.frame(seq: 1, bodySize: 10))
            XCTAssertEqual(first.receiveFrame(), TestClient.frame(seq: 1, bodySize: 10), "\(poller): v1 then a frame")
            let same = try TestClient(port: gateway.port)
            try same.send(v1("10.9.9.9", port: 6000))
            XCTAssertTrue(same.isClosedByPeer(), "\(poller): the limit applies to the address in the header")
            let binary = try TestClient(port: gateway.port)
            try binary.send(v2(10, 1, 2, 3))
            XCTAssertTrue(served(binary), "\(poller): v2")
            let split = try TestClient(port: gateway.port)
            let header = v1("10.7.7.7")
            try split.send(Array(header[..<9]))
            usleep(150_000)
            try split.send(Array(header[9...]))
            XCTAssertTrue(served(split), "\(poller): a header split across reads")
            let denied = try TestClient(port: gateway.port)
            try denied.send(v1("10.66.1.1"))
            XCTAssertTrue(denied.isClosedByPeer(), "\(poller): the deny list sees the header's address")
            let missing = try TestClient(port: gateway.port)
            try missing.send(TestClient.frame(seq: 1, bodySize: 10))
            XCTAssertTrue(missing.isClosedByPeer(), "\(poller): no header")
            let silent = try TestClient(port: gateway.port)
            XCTAssertTrue(silent.isClosedByPeer(), "\(poller): nothing within proxy_timeout")
            XCTAssertTrue(waitUntil {
                let s = gateway.stats()
                return s.closes(.proxyHeader) == 2 && s.closes(.perAddress) == 1 && s.closes(.denied) == 1
            }, "\(poller): counted by cause: \(gateway.stats().closes)")
            XCTAssertTrue(served(first), "\(poller): the first client is still served")
        }
    }

    /// The whole path behind HAProxy (Debian's haproxy, `send-proxy-v2`): the
    /// per-address limit applies to the original client addresses, not HAProxy's.
    func testBehindHAProxyTheLimitSeesTheOriginalAddress() throws {
        let candidates: [String] = ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        guard let haproxy = candidates.first(where: { Glibc.access($0, X_OK) == 0 }) else {
            return XCTFail("haproxy is not installed (Tools/install-deps.sh installs it)")
        }
        let gateway = try startGateway(.epoll) {
            $0.proxyProtocol = true
            $0.maxConnsPerIP = 2
        }
        defer { gateway.stop() }
        let front = try Listener(host: "127.0.0.1", port: 0, backlog: 4)  // a free port for HAProxy
        let frontPort = front.port
        close(front.fd)
        let config = """
            global
                maxconn 100
            defaults
                mode tcp
                timeout connect 2s
                timeout client 20s
                timeout server 20s
            frontend clients
                bind 127.0.0.1:\(frontPort)
                default_backend gateway
            backend gateway
                server g 127.0.0.1:\(gateway.port) send-proxy-v2
            """
        let path = NSTemporaryDirectory() + "gateway-haproxy-\(getpid()).cfg"
        try (config + "\n").write(toFile: path, atomically: true, encoding: .utf8)
        defer { unlink(path) }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: haproxy)
        process.arguments = ["-db", "-f", path]
        try process.run()
        defer {
            process.terminate()
            process.waitUntilExit()
        }
        XCTAssertTrue(waitUntil(seconds: 10) { (try? TestClient(port: frontPort)) != nil }, "HAProxy listens")
        XCTAssertTrue(waitUntil { gateway.stats().connectionsOpen == 0 })
        let a = try (0..<2).map { _ in try TestClient(port: frontPort, source: "127.0.0.2") }
        for c in a { XCTAssertTrue(served(c), "two from 127.0.0.2 are served") }
        let third = try TestClient(port: frontPort, source: "127.0.0.2")
        withExtendedLifetime(a) {  // release builds would close the two at their last use, before this one
            XCTAssertTrue(third.isClosedByPeer(), "the third from 127.0.0.2 is refused by the gateway")
        }
        let other = try TestClient(port: frontPort, source: "127.0.0.3")
        XCTAssertTrue(served(other), "127.0.0.3 has places of its own, though every connection comes from HAProxy")
        XCTAssertTrue(waitUntil { gateway.stats().closes(.perAddress) == 1 })
    }
}
