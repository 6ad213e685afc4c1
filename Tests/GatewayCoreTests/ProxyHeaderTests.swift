import Glibc
import XCTest
@_spi(Benchmarks) @testable import GatewayCore

/// The PROXY protocol parser (v1 and v2): good headers, every split, bad ones.
final class ProxyHeaderTests: XCTestCase {
    private func parse(_ bytes: [UInt8]) -> ProxyHeader {
        bytes.withUnsafeBytes { ProxyHeader.parse($0.baseAddress!, count: $0.count) }
    }

    private func v2(command: UInt8 = 1, family: UInt8, addresses: [UInt8]) -> [UInt8] {
        ProxyHeader.v2Signature + [0x20 | command, family << 4 | 1, UInt8(addresses.count >> 8),
                                   UInt8(addresses.count & 0xFF)] + addresses
    }

    func testVersion1() {
        let line = Array("PROXY TCP4 192.168.1.7 10.0.0.1 56324 443\r\n".utf8)
        XCTAssertEqual(parse(line + Array("rest".utf8)),
                       .header(length: line.count, source: PeerAddress(ipv4: inet_addr("192.168.1.7"), port: 56324)))
        guard case .header(_, let v6?) = parse(Array("PROXY TCP6 2001:db8::5 ::1 4000 80\r\n".utf8)) else {
            return XCTFail("TCP6")
        }
        XCTAssertEqual(v6.description, "[2001:db8::5]:4000")
        XCTAssertEqual(parse(Array("PROXY UNKNOWN\r\n".utf8)), .header(length: 15, source: nil))
        for cut in 1..<line.count { XCTAssertEqual(parse(Array(line[..<cut])), .incomplete, "cut at \(cut)") }
        for bad in ["PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "PROXY TCP5 1.2.3.4 5.6.7.8 1 2\r\n",
                    "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "PROXY TCP4 ::1 5.6.7.8 1 2\r\n",
                    "PROXY TCP4 1.2.3.4 5.6.7.8 70000 2\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\n",
                    "PROXY TCP4 1.2.3.4/8 5.6.7.8 1 2\r\n", "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "PROXZ", "GET / HTTP/1.1"] {
            guard case .invalid = parse(Array(bad.utf8)) else { return XCTFail("accepted \(bad.debugDescription)") }
        }
        guard case .invalid = parse(Array("PROXY ".utf8) + [UInt8](repeating: 0x41, count: 120)) else {
            return XCTFail("an overlong line")
        }
    }

    func testVersion2() {
        let ipv4 = v2(family: 1, addresses: [10, 1, 2, 3, 10, 0, 0, 1, 0x1F, 0x90, 0x01, 0xBB])
        XCTAssertEqual(parse(ipv4 + [1, 2, 3]),
                       .header(length: 28, source: PeerAddress(ipv4: inet_addr("10.1.2.3"), port: 8080)))
        for cut in 1..<ipv4.count { XCTAssertEqual(parse(Array(ipv4[..<cut])), .incomplete, "cut at \(cut)") }
        var six = [UInt8](repeating: 0, count: 36)
        six[0] = 0x20; six[1] = 0x01; six[15] = 9; six[32] = 0x00; six[33] = 0x50
        guard case .header(52, let v6?) = parse(v2(family: 2, addresses: six)) else { return XCTFail("IPv6") }
        XCTAssertEqual(v6.description, "[2001::9]:80")
        XCTAssertEqual(parse(v2(command: 0, family: 0, addresses: [])), .header(length: 16, source: nil), "LOCAL")
        XCTAssertEqual(parse(v2(family: 1, addresses: [UInt8](repeating: 0, count: 12) + [0, 3, 1, 2, 3])),
                       .header(length: 33, source: PeerAddress(ipv4: 0, port: 0)), "TLVs after the addresses")
        for bad in [v2(family: 1, addresses: [1, 2, 3]), v2(command: 2, family: 1, addresses: []),
                    [UInt8](ProxyHeader.v2Signature.prefix(11)) + [0xFF],
                    Array(ProxyHeader.v2Signature) + [0x30, 0x11, 0, 0]] {
            guard case .invalid = parse(bad) else { return XCTFail("accepted \(bad)") }
        }
    }
}
