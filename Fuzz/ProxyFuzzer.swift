// libFuzzer target for the PROXY protocol parser (Protection/ProxyHeader.swift).
// Built with swiftc by Tools/fuzz.sh together with the real engine files, never by SwiftPM.
//
// The input is the first bytes of a connection, copied into an allocation of exactly
// their size (so ASan sees any read past it). Checks: a parsed header's length is
// within the input and the protocol's limits (v1 107 bytes, v2 16 + its length
// field); every shorter prefix of a header is "incomplete", never a different
// verdict; and bytes after the header do not change it.

import Glibc

private func parse(_ p: UnsafeRawPointer, _ count: Int) -> ProxyHeader {
    let copy = UnsafeMutableRawPointer.allocate(byteCount: max(count, 1), alignment: 1)
    defer { copy.deallocate() }
    copy.copyMemory(from: p, byteCount: count)
    return ProxyHeader.parse(copy, count: count)
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    let p = UnsafeRawPointer(data)
    let verdict = parse(p, size)
    guard case .header(let length, let source) = verdict else { return 0 }
    precondition(length >= 15 && length <= size, "header length \(length) for \(size) bytes")
    if data[0] == UInt8(ascii: "P") {
        precondition(length <= ProxyHeader.v1MaxLength, "v1 header of \(length) bytes")
    } else {
        precondition(length == 16 + (Int(data[14]) << 8 | Int(data[15])), "v2 length \(length)")
    }
    if let source { precondition(source.family == 4 || source.family == 6, "family \(source.family)") }
    precondition(parse(p, length) == verdict, "the bytes after the header changed the verdict")
    for cut in stride(from: 1, to: length, by: max(1, length / 16)) {
        precondition(parse(p, cut) == .incomplete, "a prefix of \(cut) bytes of a header is \(parse(p, cut))")
    }
    return 0
}
