// libFuzzer target for what a master reads from its workers: their report lines (WorkerReport),
// their admin endpoints' HTTP answers (LoopbackHTTP.parse) and /metrics expositions (MetricsMerge).
// Built with swiftc by Tools/fuzz.sh together with copies of the real files, never by SwiftPM.
//
// Byte 0 chooses the parser (byte 0 % 3) and a variant (byte 0 / 3); the rest is the input.
// Checks for every input, besides never trapping:
//  - WorkerReport: a parsed line renders (line, less its newline) to a line that parses to the same
//    report; READY ports are 0...65535; a rendered line is at most maxLength bytes;
//  - LoopbackHTTP.parse: an answer found before the end of the stream is the same once it ended;
//    its status is what the first line's second word says;
//  - MetricsMerge: the input split in two at an input-chosen point, merged as two processes: every
//    sample line carries the label first, each family's HELP and TYPE appear at most once, and every
//    sample of the input appears exactly as often as the input has it (per process).

import Foundation
import Glibc

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzz(_ data: UnsafePointer<UInt8>, _ size: Int) -> Int32 {
    guard size > 0 else { return 0 }
    let mode = Int(data[0]) % 3, variant = Int(data[0]) / 3
    let rest = Array(UnsafeBufferPointer(start: data + 1, count: size - 1))
    switch mode {
    case 0: fuzzReport(rest)
    case 1: fuzzHTTP(rest)
    default: fuzzMerge(rest, split: variant)
    }
    return 0
}

private func check(_ condition: Bool, _ message: @autoclosure () -> String) {
    if !condition {
        FileHandle.standardError.write(Data("check failed: \(message())\n".utf8))
        abort()
    }
}

private func fuzzReport(_ bytes: [UInt8]) {
    // As the master reads it: the first line only.
    let text = String(decoding: bytes, as: UTF8.self).split(whereSeparator: \.isNewline).first ?? ""
    guard let report = WorkerReport(parsing: text) else { return }
    let line = report.line
    check(line.utf8.count <= WorkerReport.maxLength + 4, "line too long: \(line.utf8.count)")
    if case .ready(let port) = report { check((0...65535).contains(port), "port \(port)") }
    let again = WorkerReport(parsing: Substring(line.dropLast()))
    // A reason past the line's bytes is cut (whole characters): what was sent then reads back unchanged.
    check(again?.line == line, "\(report) rendered \(line) parses to \(String(describing: again))")
    if case .failed(let why) = report, why.utf8.count > WorkerReport.maxLength - 8 { return }
    check(again == report, "\(report) rendered \(line) parses to \(String(describing: again))")
}

private func fuzzHTTP(_ bytes: [UInt8]) {
    let early = LoopbackHTTP.parse(bytes)
    let ended = LoopbackHTTP.parse(bytes, ended: true)
    if let early {
        check(ended.map { $0 == early } == true, "an answer changed at the end of the stream")
    }
    if let ended {
        let head = String(decoding: bytes, as: UTF8.self).lowercased()
        let first = head.split(separator: "\r\n", maxSplits: 1).first ?? ""
        let words = first.split(separator: " ")
        check(words.count >= 2 && Int(words[1]) == ended.status, "status \(ended.status) from '\(first)'")
    }
}

private func fuzzMerge(_ bytes: [UInt8], split: Int) {
    let text = String(decoding: bytes, as: UTF8.self)
    let at = text.index(text.startIndex, offsetBy: min(split, text.count))
    let parts = [("0", String(text[..<at])), ("1", String(text[at...]))]
    let merged = MetricsMerge.merge(parts, label: "w")
    var seen = Set<String>()
    var produced: [String: Int] = [:]
    for line in merged.split(whereSeparator: \.isNewline) {
        if line.hasPrefix("# HELP ") || line.hasPrefix("# TYPE ") {
            let words = line.split(separator: " ", maxSplits: 3)  // "#", HELP or TYPE, the family's name
            check(seen.insert("\(words[1]) \(words[2])").inserted, "family line twice: \(line)")
        } else {
            check(line.contains("{w=\"0\"") || line.contains("{w=\"1\""), "unlabelled sample: \(line)")
            produced[String(line), default: 0] += 1
        }
    }
    var expected: [String: Int] = [:]
    for (value, part) in parts {
        for line in part.split(whereSeparator: \.isNewline) where !line.hasPrefix("#") {
            if let sample = MetricsMerge.labelled(line, label: "w", value: value) { expected[sample, default: 0] += 1 }
        }
    }
    check(produced == expected, "samples differ: \(produced) vs \(expected)")
}
