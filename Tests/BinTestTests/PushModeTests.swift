import XCTest
import Foundation
import Glibc
@testable import BinTestKit
import GatewayCore
import LinkCore
import TestSupport

/// Push mode end to end: `bin_test core` pushing on its schedule, an access gateway in front of it,
/// `bin_test client --mode push` logged in behind it; and the client's checks against a fake server.
final class PushModeTests: XCTestCase {
    private var running: [Gateway] = []

    override func tearDown() {
        for g in running.reversed() { g.stop() }
        running = []
    }

    /// The core (pushing per `push`) and an access gateway with both links up to it.
    private func startCoreAndAccess(_ push: PushSettings) throws -> (access: Gateway, core: EchoCore) {
        var logger = ServerMode.makeLogger()
        logger.logLevel = .error
        var settings = CoreSettings()
        settings.port = 0
        settings.push = push
        let (coreGateway, core) = try CoreMode.start(settings, logger: logger)
        running.append(coreGateway)
        var config = GatewayConfig()
        config.port = 0
        config.tickMilliseconds = 10
        config.upstream = [GatewayConfig.Upstream(host: "127.0.0.1", port: coreGateway.port)]
        let access = try Gateway(config: config, handler: EchoHandler(), logger: logger)
        try access.start()
        running.append(access)
        let deadline = Date().addingTimeInterval(10)
        while access.stats().linksUp < 2 && Date() < deadline { usleep(5_000) }
        XCTAssertEqual(access.stats().linksUp, 2, "links up")
        return (access, core)
    }

    /// `count` pushes at 2,000/s once every connection has logged in (the core waits for their
    /// logins), each reaching `perPush` connections; the client's window closes when all
    /// `count * perPush` have arrived. By construction, not by timing: --duration only bounds a failure.
    private func pushRun(_ scope: PushScope, count: Int, perPush: Int, conns: Int = 50, uids: Int = 5) throws
        -> (report: ClientReport, core: EchoCore) {
        var push = PushSettings()
        push.rate = 2000
        push.scope = scope
        push.uids = uids
        push.afterLogins = conns
        push.count = count
        let (access, core) = try startCoreAndAccess(push)
        let report = ClientRun.run(testSettings(port: access.port) {
            $0.mode = .push
            $0.conns = conns
            $0.threads = 2
            $0.pushUids = uids
            $0.pushScope = scope
            $0.count = UInt64(count * perPush)
            $0.duration = 60
        })
        return (report, core)
    }

    func testEveryPushToAUidReachesEachOfItsConnectionsOnce() throws {
        let (report, core) = try pushRun(.uid, count: 2000, perPush: 10)
        XCTAssertEqual(report.messages, [])
        XCTAssertEqual(report.errors, 0)
        XCTAssertEqual(report.connectFailures, 0)
        XCTAssertEqual(core.pushes, 2000, "the schedule stops at --push-count")
        XCTAssertGreaterThan(report.replies, 0)
        // 50 connections over 5 uids: each push reaches the 10 logged in as its target.
        XCTAssertEqual(report.replies, 2000 * 10)
        XCTAssertEqual(report.latency.totalCount, report.replies)
        XCTAssertEqual(report.exitCode, 0)
    }

    func testPushesToRoomsAndToEveryoneReachExactlyTheirRecipients() throws {
        for (scope, perPush) in [(PushScope.room, 10), (.all, 50)] {
            let (report, core) = try pushRun(scope, count: 400, perPush: perPush)
            XCTAssertEqual(report.messages, [], "\(scope)")
            XCTAssertEqual(report.errors, 0, "\(scope)")
            XCTAssertEqual(core.pushes, 400, "\(scope)")
            XCTAssertEqual(report.replies, UInt64(400 * perPush), "\(scope)")
            tearDown()
        }
    }

    func testTheScheduleWaitsForItsLoginsThenCountsAfter() throws {
        var push = PushSettings()
        push.rate = 1000
        push.after = 0.5
        push.afterLogins = 3
        let schedule = PushSchedule(push, now: 1_000)
        let server = CoreServer(handler: EchoCore(), node: 1, clientMaxFrame: 1024, logger: ServerMode.makeLogger())
        XCTAssertEqual(schedule.run(now: 5_000_000_000, logins: 2, server: server), 0)
        XCTAssertNil(schedule.start, "two logins of three: not started, however late")
        XCTAssertTrue(schedule.asking.isEmpty, "nor are the nodes asked yet")
        XCTAssertEqual(schedule.run(now: 6_000_000_000, logins: 3, server: server), 0)
        XCTAssertNil(schedule.start, "bound here, not yet known bound at the nodes")
        let round = schedule.asking
        XCTAssertEqual(round.count, 1, "PRESENCE for uid 1 (push.uids is 1)")
        schedule.presence(seq: round.first!, count: 2)
        XCTAssertEqual(schedule.run(now: 6_050_000_000, logins: 3, server: server), 0)
        XCTAssertNil(schedule.start, "the answers so far count 2 of 3")
        XCTAssertEqual(schedule.asking, round, "within 100 ms the round is not asked again")
        _ = schedule.run(now: 6_100_000_000, logins: 3, server: server)
        XCTAssertNotEqual(schedule.asking, round, "100 ms on, a new round")
        schedule.presence(seq: round.first!, count: 1)
        XCTAssertNil(schedule.start, "an answer to the old round counts for nothing")
        schedule.presence(seq: schedule.asking.first!, count: 3)
        XCTAssertEqual(schedule.run(now: 6_200_000_000, logins: 3, server: server), 0, "started, first push 0.5 s on")
        XCTAssertEqual(schedule.start, 6_700_000_000)
        var prompt = PushSettings()
        prompt.rate = 1000
        prompt.after = 0.5
        XCTAssertEqual(PushSchedule(prompt, now: 1_000).start, 500_001_000, "no logins asked: from the core's start")
    }

    func testAPushForAnotherUidIsAnError() throws {
        // Connection 0 logs in as uid 1: the push to uid 1 counts, the one to uid 2 is an error.
        let server = try PushServer(pushes: [PushServer.push(seq: 1, target: 1), PushServer.push(seq: 2, target: 2)])
        let report = ClientRun.run(testSettings(port: server.port) {
            $0.mode = .push
            $0.duration = 1
            $0.grace = 1
        })
        XCTAssertEqual(report.replies, 1)
        XCTAssertEqual(report.errors, 1)
        XCTAssertEqual(report.messages.count, 1)
        XCTAssertTrue(report.messages.first?.contains("push seq 2: scope 1 target 2") == true, "\(report.messages)")
        XCTAssertTrue(report.messages.first?.contains("meant for another recipient") == true, "\(report.messages)")
        XCTAssertEqual(report.exitCode, 1)
    }

    func testAPushWithAWrongByteIsAnError() throws {
        var bad = PushServer.push(seq: 7, target: 1)
        bad[FrameHeader.size + 40] ^= 0x5A
        let server = try PushServer(pushes: [PushServer.push(seq: 6, target: 1), bad])
        let report = ClientRun.run(testSettings(port: server.port) {
            $0.mode = .push
            $0.duration = 1
            $0.grace = 1
        })
        XCTAssertEqual(report.replies, 1)
        XCTAssertEqual(report.errors, 1)
        XCTAssertTrue(report.messages.first?.contains("push seq 7: body mismatch at byte 40") == true,
                      "\(report.messages)")
    }

    func testPushFlags() throws {
        guard case .core(let core) = try Invocation.parse(arguments: [
            "core", "--push-rate", "100", "--push-scope", "room", "--push-uids", "7", "--push-size", "24",
            "--push-after", "1.5", "--push-count", "9", "--push-after-logins", "4"])
        else { return XCTFail("not a core invocation") }
        XCTAssertEqual(core.push.rate, 100)
        XCTAssertEqual(core.push.scope, .room)
        XCTAssertEqual(core.push.uids, 7)
        XCTAssertEqual(core.push.size, 24)
        XCTAssertEqual(core.push.after, 1.5)
        XCTAssertEqual(core.push.count, 9)
        XCTAssertEqual(core.push.afterLogins, 4)
        guard case .client(let client) = try Invocation.parse(arguments: [
            "client", "--mode", "push", "--push-uids", "3", "--push-scope", "all", "--push-size", "100"])
        else { return XCTFail("not a client invocation") }
        XCTAssertEqual(client.pushUids, 3)
        XCTAssertEqual(client.pushScope, .all)
        XCTAssertEqual(client.pushSize, 100)
        for arguments in [["core", "--push-size", "23"], ["core", "--push-scope", "node"],
                          ["client", "--push-uids", "3"], ["client", "--mode", "push", "--push-uids", "0"],
                          ["client", "--mode", "push", "--conns", "5", "--count", "4"]] {
            XCTAssertThrowsError(try Invocation.parse(arguments: arguments), "\(arguments)") {
                XCTAssertTrue($0 is SettingsError, "\(arguments): \($0)")
            }
        }
    }
}

/// Stands in for a gateway in front of a pushing core, for one connection: echoes its LOGIN,
/// then writes the given frames and holds the connection until the client closes it.
private final class PushServer: @unchecked Sendable {
    private let listener: LoopbackListener
    var port: Int { listener.port }

    /// A well-formed push of `PushFrame.defaultSize` body bytes, to uid `target`.
    static func push(seq: UInt32, target: UInt32) -> [UInt8] {
        let size = PushFrame.defaultSize
        var frame = [UInt8](repeating: 0, count: FrameHeader.size + size)
        frame.withUnsafeMutableBytes { raw in
            let p = raw.baseAddress!
            FrameHeader(length: UInt32(raw.count), seq: seq, cmd: PushFrame.cmd, uid: target).encode(into: p)
            let body = p + FrameHeader.size
            body.storeBytes(of: MonotonicTime.now().bigEndian, as: UInt64.self)
            body.storeBytes(of: target.bigEndian, toByteOffset: PushFrame.targetOffset, as: UInt32.self)
            body.storeBytes(of: PushScope.uid.linkScope.rawValue, toByteOffset: PushFrame.scopeOffset, as: UInt8.self)
            for i in PushFrame.padOffset..<size {
                body.storeBytes(of: FramePattern.bodyByte(seq: seq, index: i), toByteOffset: i, as: UInt8.self)
            }
        }
        return frame
    }

    init(pushes: [[UInt8]]) throws {
        listener = try LoopbackListener(backlog: 4)
        Thread.detachNewThread { [self] in serve(pushes) }
    }

    private func serve(_ pushes: [[UInt8]]) {
        guard let fd = listener.accept()?.fd else { return }
        defer { Glibc.close(fd) }
        var login = [UInt8](repeating: 0, count: PushFrame.loginLength)
        var got = 0
        while got < login.count {
            let n = login.withUnsafeMutableBytes { read(fd, $0.baseAddress! + got, $0.count - got) }
            guard n > 0 else { return }
            got += n
        }
        for frame in [login] + pushes {
            guard frame.withUnsafeBytes({ send(fd, $0.baseAddress!, $0.count, Int32(MSG_NOSIGNAL)) }) == frame.count
            else { return }
        }
        var sink = [UInt8](repeating: 0, count: 256)
        while sink.withUnsafeMutableBytes({ read(fd, $0.baseAddress!, $0.count) }) > 0 {}
    }
}
