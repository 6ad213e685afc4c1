import Glibc
import Testing

@testable import GatewayCLI

/// The hand-over protocol's lines: each one round-trips, and near misses are refused.
@Suite struct HandoverLineTests {
    @Test func everyLineRoundTrips() {
        let lines: [HandoverLine] = [.takeOver(version: 1), .listeners(count: 3, generation: 4_000_000_000), .started,
                                     .draining(seconds: 604_800), .refused("already handed over"), .startedMoving, .moving,
                                     .adopted(count: 0), .adopted(count: 253)]
        for line in lines { #expect(HandoverLine(parsing: line.text) == line, "\(line.text)") }
    }

    @Test(arguments: ["", "TAKEOVER", "TAKEOVER 0", "TAKEOVER 1 ", " TAKEOVER 1", "TAKEOVER  1", "TAKEOVER +1", "TAKEOVER 01", "DRAINING 0060", "LISTENERS 2 GENERATION 007",
                      "LISTENERS 0 GENERATION 1", "LISTENERS 254 GENERATION 1", "LISTENERS 2 GENERATION 4294967296",
                      "LISTENERS 2 GEN 1", "STARTED now", "DRAINING -1", "DRAINING 604801", "REFUSED",
                      "takeover 1", String(repeating: "A", count: 300)])
    func nearMissesAreRefused(_ line: String) {
        #expect(HandoverLine(parsing: line) == nil)
    }

    /// The control socket's read and write bounds are checked: one that cannot be set is an error
    /// (the take-over is abandoned) rather than a hand-over that may hang.
    @Test func aTimeoutThatCannotBeSetIsAnError() throws {
        var fds: [Int32] = [0, 0]
        try #require(pipe(&fds) == 0)
        defer { close(fds[1]) }
        let stream = UnixStream(fd: fds[0])  // not a socket: setsockopt fails with ENOTSOCK
        let error = #expect(throws: HandoverError.self) { try stream.setTimeout(seconds: 1) }
        #expect(error?.description.contains("SO_RCVTIMEO") ?? false, "\(String(describing: error))")
    }
}
