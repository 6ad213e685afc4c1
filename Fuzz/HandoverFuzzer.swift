// libFuzzer target for what a new process reads in a hot restart's hand-over (docs/HANDOVER.md): a
// batch header (BatchWire.parse) and the connection records after it (MovedConnection.decode). Built
// with swiftc by Tools/fuzz.sh together with the real files, never by SwiftPM.
//
// Byte 0 is the record count the header claimed; the rest is the input. Checks for every input,
// besides never trapping:
//  - a header that parses is rendered back to the same 16 bytes, within the limits;
//  - records that decode fill the input exactly, and encode back to it byte for byte, each with the
//    descriptor given for it.

import Foundation
import Glibc

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size > 0 else { return 0 }
    let count = Int(data[0])
    let rest = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    if rest.count >= BatchWire.headerSize, let (n, bytes) = BatchWire.parse(header: Array(rest.prefix(16))) {
        check(n <= BatchWire.maxCount && bytes <= BatchWire.maxBytes, "header past its limits: \(n) \(bytes)")
        check(BatchWire.header(count: n, bytes: bytes) == Array(rest.prefix(16)), "header does not round-trip")
    }
    let fds = (0..<count).map { Int32(100 + $0) }
    if let records = MovedConnection.decode(rest, count: count, fds: fds) {
        check(records.count == count, "\(records.count) records for \(count)")
        var again: [UInt8] = []
        for (i, r) in records.enumerated() {
            check(r.fd == fds[i], "record \(i) has descriptor \(r.fd)")
            r.encode(into: &again)
        }
        check(again == rest, "records do not encode back to their input")
    }
    return 0
}

private func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition {
        FileHandle.standardError.write(Data("check failed: \(message())\n".utf8))
        abort()
    }
}
