import Foundation
import GatewayCore
import Logging
import Testing

@testable import GatewayCLI

/// A reload re-reads the file: a live key takes effect on the running gateway, a key that needs a
/// restart is reported and kept, and a bad file changes nothing.
@Suite(.serialized) struct ReloadTests {
    /// A running echo gateway and the Reloads over it, reading `file`.
    private static func start(_ file: TemporaryFile) throws -> (Gateway, Reloads) {
        let path = file.path
        let reread = { @Sendable () throws(ConfigError) -> Settings in
            try Settings.resolve(flags: ["port": "0"], environment: [:], configFile: path)
        }
        let settings = try reread()
        let gateway = try Gateway(config: settings.config, logger: Logger(label: "reload-test"))
        try gateway.start()
        return (gateway, Reloads(gateway: gateway, settings: settings, logger: Logger(label: "reload-test"),
                                 reread: reread))
    }

    @Test(.timeLimit(.minutes(1)))
    func liveKeyTakesEffectAndBadFileChangesNothing() throws {
        let file = try TemporaryFile("max_conns_per_ip: 0\nstats_interval: 10\n")
        defer { file.remove() }
        let (gateway, reloads) = try Self.start(file)
        defer { gateway.stop() }
        let first = try EchoSocket(port: gateway.port), second = try EchoSocket(port: gateway.port)
        #expect(try first.echo(1) && second.echo(2))

        try "max_conns_per_ip: 2\nstats_interval: 3\n".write(toFile: file.path, atomically: true, encoding: .utf8)
        #expect(reloads.reload() == .applied(changed: ["max_conns_per_ip", "stats_interval"], needRestart: []))
        #expect(reloads.settings.statsInterval == 3)
        // Two are open from 127.0.0.1: a third is refused at accept, the two go on.
        let third = try EchoSocket(port: gateway.port)
        #expect(try !third.echo(3))
        #expect(try waitFor { gateway.stats().closes(.perAddress) == 1 })
        #expect(try first.echo(4) && second.echo(5))

        // A bad value: refused, naming the key; the limit of 2 still holds.
        try "max_conns_per_ip: -1\n".write(toFile: file.path, atomically: true, encoding: .utf8)
        guard case .rejected(let why) = reloads.reload() else { Issue.record("bad file applied"); return }
        #expect(why.contains("max_conns_per_ip"))
        #expect(reloads.settings.config.maxConnsPerIP == 2)
        #expect(try !EchoSocket(port: gateway.port).echo(6))
        #expect(try waitFor { gateway.stats().closes(.perAddress) == 2 })

        // A file that cannot be parsed changes nothing either.
        try "max_conns_per_ip: [1\n".write(toFile: file.path, atomically: true, encoding: .utf8)
        guard case .rejected = reloads.reload() else { Issue.record("unparsable file applied"); return }
        #expect(reloads.settings.config.maxConnsPerIP == 2)

        // Back to no limit, with a key that needs a restart: reported, and its running value kept.
        try "max_conns_per_ip: 0\nmax_connections: 5000\n".write(toFile: file.path, atomically: true,
                                                                   encoding: .utf8)
        #expect(reloads.reload() == .applied(changed: ["max_conns_per_ip", "stats_interval"],
                                             needRestart: ["max_connections"]))
        #expect(reloads.settings.config.maxConnections == GatewayConfig().maxConnections)
        #expect(try EchoSocket(port: gateway.port).echo(7))
    }

    @Test(.timeLimit(.minutes(1)))
    func denyListAndLogLevelApplyLive() throws {
        let file = try TemporaryFile("log_level: info\n")
        defer { file.remove() }
        let (gateway, reloads) = try Self.start(file)
        defer { gateway.stop() }
        let before = LiveLogLevel.shared.level
        defer { LiveLogLevel.shared.level = before }
        #expect(try EchoSocket(port: gateway.port).echo(1))
        try "log_level: debug\ndeny: 127.0.0.0/8\n".write(toFile: file.path, atomically: true, encoding: .utf8)
        #expect(reloads.reload() == .applied(changed: ["deny", "log_level"], needRestart: []))
        #expect(LiveLogLevel.shared.level == .debug)
        #expect(try !EchoSocket(port: gateway.port).echo(2))
        #expect(try waitFor { gateway.stats().closes(.denied) == 1 })
    }

    private func waitFor(_ condition: () -> Bool) throws -> Bool {
        for _ in 0..<500 {
            if condition() { return true }
            usleep(10_000)
        }
        return condition()
    }
}

/// A blocking client that sends one frame and says whether its echo came back.
final class EchoSocket: @unchecked Sendable {  // used by one thread at a time
    let fd: Int32

    init(port: Int) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size))
            }
        }
        try #require(rc == 0, "connect: \(String(cString: strerror(errno)))")
        var limit = timeval(tv_sec: 5, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
    }

    deinit { close(fd) }

    /// This end's port: how /proc/net/tcp names the connection.
    var localPort: UInt16 {
        var address = sockaddr_in()
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) }
        }
        return UInt16(bigEndian: address.sin_port)
    }

    /// True when the identical frame came back; false when the gateway closed the connection.
    func echo(_ seq: UInt32) throws -> Bool {
        try request(seq) && reply(seq)
    }

    static func frame(_ seq: UInt32) -> [UInt8] {
        var frame = [UInt8](repeating: 0, count: 22)
        frame[3] = 22
        withUnsafeBytes(of: seq.bigEndian) { frame.replaceSubrange(4..<8, with: $0) }
        frame[9] = 1
        frame[18...] = [1, 2, 3, 4]
        return frame
    }

    /// Sends the frame `echo` sends; false if the connection is gone.
    func request(_ seq: UInt32) -> Bool {
        let frame = Self.frame(seq)
        return send(fd, frame, frame.count, Int32(MSG_NOSIGNAL)) == frame.count
    }

    /// True when the frame of `request(seq)` came back; false when the gateway closed the connection.
    func reply(_ seq: UInt32) throws -> Bool {
        var reply = [UInt8](repeating: 0, count: 22)
        var got = 0
        while got < reply.count {
            let n = reply.withUnsafeMutableBytes { recv(fd, $0.baseAddress! + got, 22 - got, 0) }
            if n <= 0 {
                try #require(n == 0 || errno == ECONNRESET, "recv: \(String(cString: strerror(errno)))")
                return false
            }
            got += n
        }
        return reply == Self.frame(seq)
    }

    /// Waits up to `seconds` for each reply from now on.
    func setReplyTimeout(seconds: Int) {
        var limit = timeval(tv_sec: seconds, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
    }
}
