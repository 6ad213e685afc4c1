/// The PROXY protocol header a balancer (HAProxy, LVS, a cloud balancer) sends
/// before a connection's own bytes, version 1 (text) and 2 (binary), as
/// specified by HAProxy's proxy-protocol.txt. It names the client the balancer
/// accepted; this parser reads one from the start of a byte stream.
public enum ProxyHeader: Equatable, Sendable {
    /// A whole header of `length` bytes naming `source` (nil: v1 UNKNOWN, v2 LOCAL or
    /// an address family other than IPv4/IPv6: keep the connection's own address).
    case header(length: Int, source: PeerAddress?)
    /// The bytes so far are a valid beginning; more are needed.
    case incomplete
    case invalid(String)

    /// v1 lines are at most 107 bytes with their CRLF.
    public static let v1MaxLength = 107
    static let v2Signature: [UInt8] = [0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D, 0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A]

    /// Parses the start of `bytes` (`count` bytes received so far).
    public static func parse(_ bytes: UnsafeRawPointer, count: Int) -> ProxyHeader {
        guard count > 0 else { return .incomplete }
        let first = bytes.load(as: UInt8.self)
        if first == UInt8(ascii: "P") { return parseV1(bytes, count: count) }
        if first == v2Signature[0] { return parseV2(bytes, count: count) }
        return .invalid("no PROXY header")
    }

    // MARK: version 1: "PROXY TCP4 1.2.3.4 5.6.7.8 1234 80\r\n"

    private static func parseV1(_ p: UnsafeRawPointer, count: Int) -> ProxyHeader {
        let prefix = Array("PROXY ".utf8)
        for i in 0..<min(count, prefix.count) where p.load(fromByteOffset: i, as: UInt8.self) != prefix[i] {
            return .invalid("not a PROXY v1 line")
        }
        var end = -1
        for i in 0..<min(count, v1MaxLength) where p.load(fromByteOffset: i, as: UInt8.self) == 0x0A {
            end = i
            break
        }
        guard end >= 0 else { return count >= v1MaxLength ? .invalid("PROXY v1 line longer than 107 bytes") : .incomplete }
        guard end >= 1, p.load(fromByteOffset: end - 1, as: UInt8.self) == 0x0D else {
            return .invalid("PROXY v1 line not ended by CRLF")
        }
        let line = String(decoding: UnsafeRawBufferPointer(start: p, count: end - 1), as: UTF8.self)
        let fields = line.split(separator: " ", omittingEmptySubsequences: false).map(String.init)
        guard fields.count >= 2 else { return .invalid("PROXY v1 line without a protocol") }
        if fields[1] == "UNKNOWN" { return .header(length: end + 1, source: nil) }
        guard fields.count == 6, fields[1] == "TCP4" || fields[1] == "TCP6" else {
            return .invalid("PROXY v1 line: expected TCP4, TCP6 or UNKNOWN and 4 fields")
        }
        guard let source = CIDR(parsing: fields[2]), let destination = CIDR(parsing: fields[3]),
              source.family == (fields[1] == "TCP4" ? 4 : 6), destination.family == source.family,
              !fields[2].contains("/"), !fields[3].contains("/"),
              let sourcePort = port(fields[4]), port(fields[5]) != nil else {
            return .invalid("PROXY v1 line: bad address or port")
        }
        return .header(length: end + 1, source: PeerAddress(family: source.family, port: sourcePort,
                                                             bytes: CIDR.raw(source.bits)))
    }

    private static func port(_ text: String) -> UInt16? {
        guard !text.isEmpty, text.count <= 5, text.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
              !(text.count > 1 && text.hasPrefix("0")) else { return nil }
        return UInt16(text)
    }

    // MARK: version 2: 12-byte signature, version/command, family/protocol, length, addresses

    private static func parseV2(_ p: UnsafeRawPointer, count: Int) -> ProxyHeader {
        for i in 0..<min(count, v2Signature.count) where p.load(fromByteOffset: i, as: UInt8.self) != v2Signature[i] {
            return .invalid("not a PROXY v2 signature")
        }
        guard count >= 16 else { return .incomplete }
        let versionCommand = p.load(fromByteOffset: 12, as: UInt8.self)
        guard versionCommand >> 4 == 2 else { return .invalid("PROXY v2 version \(versionCommand >> 4)") }
        let command = versionCommand & 0x0F
        guard command <= 1 else { return .invalid("PROXY v2 command \(command)") }
        let familyProtocol = p.load(fromByteOffset: 13, as: UInt8.self)
        let addressLength = Int(UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 14, as: UInt16.self)))
        let length = 16 + addressLength
        guard count >= length else { return .incomplete }
        if command == 0 { return .header(length: length, source: nil) }  // LOCAL: the balancer's own check
        switch familyProtocol >> 4 {
        case 1:  // AF_INET: source 4, destination 4, source port 2, destination port 2
            guard addressLength >= 12 else { return .invalid("PROXY v2 IPv4 addresses in \(addressLength) bytes") }
            var raw = (UInt64(0), UInt64(0))
            withUnsafeMutableBytes(of: &raw) { $0.copyMemory(from: UnsafeRawBufferPointer(start: p + 16, count: 4)) }
            let port = UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 24, as: UInt16.self))
            return .header(length: length, source: PeerAddress(family: 4, port: port, bytes: raw))
        case 2:  // AF_INET6: 16 + 16 + 2 + 2
            guard addressLength >= 36 else { return .invalid("PROXY v2 IPv6 addresses in \(addressLength) bytes") }
            var raw = (UInt64(0), UInt64(0))
            withUnsafeMutableBytes(of: &raw) { $0.copyMemory(from: UnsafeRawBufferPointer(start: p + 16, count: 16)) }
            let port = UInt16(bigEndian: p.loadUnaligned(fromByteOffset: 48, as: UInt16.self))
            return .header(length: length, source: PeerAddress(family: 6, port: port, bytes: raw))
        default:  // AF_UNSPEC or AF_UNIX: no address to use
            return .header(length: length, source: nil)
        }
    }
}
