// libFuzzer target for the CIDR parser of the allow and deny lists (Protection/CIDR.swift).
// Built with swiftc by Tools/fuzz.sh together with the real engine files, never by SwiftPM.
//
// The input is the text of one list item. Checks for every input: parsing never
// crashes; when it succeeds, the prefix is in range for the family, the network's
// own address is in it, the text it prints parses back to the same network, an
// address differing in the prefix's last bit is outside it and one differing only
// past the prefix is inside.

import Glibc

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let text = String(decoding: UnsafeBufferPointer(start: data, count: size), as: UTF8.self)
    guard let network = CIDR(parsing: text) else { return 0 }
    let maxPrefix = network.family == 4 ? 32 : 128
    precondition((0...maxPrefix).contains(network.prefix), "prefix \(network.prefix) for family \(network.family)")
    let printed = network.description
    guard let again = CIDR(parsing: printed) else { preconditionFailure("\(text) printed as \(printed), unparsable") }
    precondition(again == network, "\(text) -> \(printed) -> \(again)")
    let raw = CIDR.raw(network.bits)
    let own = PeerAddress(family: network.family, port: 0, bytes: raw)
    precondition(network.contains(own), "\(network) does not contain its own address")
    func flipped(_ bit: Int) -> PeerAddress {
        var key = network.bits
        if bit < 64 { key.high ^= 1 << UInt64(63 - bit) } else { key.low ^= 1 << UInt64(127 - bit) }
        return PeerAddress(family: network.family, port: 0, bytes: CIDR.raw(key))
    }
    if network.prefix > 0 {
        let outside = flipped(network.prefix - 1)
        precondition(!network.contains(outside), "\(network) contains \(outside), which differs in its last prefix bit")
    }
    if network.prefix < maxPrefix {
        let inside = flipped(network.prefix)
        precondition(network.contains(inside), "\(network) lacks \(inside), which differs only past the prefix")
    }
    return 0
}
