@testable import GatewayCLI
import Testing

/// What a master reads from its workers: their report lines, and their admin endpoints' HTTP answers.
@Suite struct WorkerWireTests {
    @Test func reportLinesRoundTrip() {
        let reports: [WorkerReport] = [.ready(adminPort: 0), .ready(adminPort: 40641), .failed("invalid max_frame 'x'"),
                                       .handedOver]
        for report in reports {
            #expect(WorkerReport(parsing: report.line.dropLast()) == report)
        }
        #expect(WorkerReport.failed("two\nlines").line == "FAILED twolines\n")
        #expect(WorkerReport.failed(String(repeating: "x", count: 2000)).line.utf8.count <= WorkerReport.maxLength)
        // Cut in whole characters of several bytes each, still within the line's bytes (found by the fuzzer).
        let wide = WorkerReport.failed(String(repeating: "\u{FFFD}", count: 400)).line
        #expect(wide.utf8.count <= WorkerReport.maxLength && wide.hasSuffix("\u{FFFD}\n"))
        for bad in ["", "READY", "READY x", "READY 65536", "READY -1", "SERVING 1", "ready 1"] {
            #expect(WorkerReport(parsing: Substring(bad)) == nil, "\(bad)")
        }
    }

    @Test func httpAnswersByLengthChunksOrEnd() throws {
        func bytes(_ text: String) -> [UInt8] { Array(text.utf8) }
        let sized = bytes("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        #expect(LoopbackHTTP.parse(sized)! == (200, "hello"))
        #expect(LoopbackHTTP.parse(Array(sized.dropLast())) == nil, "incomplete body")
        let chunked = bytes("HTTP/1.1 503 Service Unavailable\r\ntransfer-encoding: chunked\r\n\r\n"
                            + "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
        #expect(LoopbackHTTP.parse(chunked)! == (503, "abcde"))
        #expect(LoopbackHTTP.parse(Array(chunked.prefix(70))) == nil, "incomplete chunks")
        let open = bytes("HTTP/1.0 200 OK\r\n\r\nto the end")
        #expect(LoopbackHTTP.parse(open) == nil)
        #expect(LoopbackHTTP.parse(open, ended: true)! == (200, "to the end"))
        #expect(LoopbackHTTP.parse(bytes("SSH-2.0\r\n\r\n"), ended: true) == nil)
        #expect(LoopbackHTTP.parse(bytes("HTTP/1.1\r\n\r\n"), ended: true) == nil)
        #expect(LoopbackHTTP.parse(bytes("HTTP/1.1 200 OK\r\ncontent-length: -5\r\n\r\nabc"), ended: true)! == (200, "abc"))
        #expect(LoopbackHTTP.parse(bytes("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n-1\r\nabc")) == nil)
        #expect(LoopbackHTTP.parse(bytes("HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n")) == nil)
    }
}
