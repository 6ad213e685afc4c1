import Foundation
import GatewayCore
import Logging
import Synchronization
import XCTest
@testable import GatewayAdmin

/// The gateway under test, with drain and reload recorded instead of done.
final class TestControl: AdminControl {
    private struct State {
        var draining = false
        var reloadOutcome = ReloadOutcome.applied(changed: [], needRestart: [])
        var reloads = 0
    }

    let gateway: Gateway
    private let state = Mutex(State())

    init(_ gateway: Gateway) { self.gateway = gateway }

    func stats() -> GatewayStats { gateway.stats() }
    var roundTrips: RoundTrips { gateway.roundTrips }
    var isDraining: Bool { state.withLock { $0.draining } }

    func drain() -> Bool {
        state.withLock { state in
            defer { state.draining = true }
            return !state.draining
        }
    }

    func reload() -> ReloadOutcome {
        state.withLock { state in
            state.reloads += 1
            return state.reloadOutcome
        }
    }

    var reloads: Int { state.withLock { $0.reloads } }
    func answerReload(with outcome: ReloadOutcome) { state.withLock { $0.reloadOutcome = outcome } }
}

/// A started echo gateway with an admin server in front of its counters.
final class AdminFixture {
    let gateway: Gateway
    let control: TestControl
    let admin: AdminServer
    let adminPort: Int

    init(adminHost: String = "127.0.0.1", allowPublic: Bool = false) throws {
        var config = GatewayConfig()
        config.host = "127.0.0.1"
        config.port = 0
        config.maxConnections = 64
        config.tickMilliseconds = 50
        gateway = try Gateway(config: config, logger: Logger(label: "test-gateway"))
        try gateway.start()
        control = TestControl(gateway)
        admin = try AdminServer(host: adminHost, port: 0, allowPublic: allowPublic, control: control,
                                logger: Logger(label: "test-admin"))
        adminPort = try admin.start()
    }

    func stop() {
        admin.stop()
        gateway.stop()
    }
}

final class AdminServerTests: XCTestCase {
    func testHealthzDrainAndReload() throws {
        let f = try AdminFixture()
        defer { f.stop() }

        var reply = try http("GET", "/healthz", port: f.adminPort)
        XCTAssertEqual(reply.status, 200)
        XCTAssertEqual(reply.body, "serving\n")
        XCTAssertEqual(try http("POST", "/drain", port: f.adminPort).status, 202)
        XCTAssertTrue(f.control.isDraining)
        reply = try http("GET", "/healthz", port: f.adminPort)
        XCTAssertEqual(reply.status, 503)
        XCTAssertEqual(reply.body, "draining\n")
        XCTAssertEqual(try http("POST", "/drain", port: f.adminPort).status, 409)

        f.control.answerReload(with: .applied(changed: ["idle_timeout", "log_level"], needRestart: ["port"]))
        reply = try http("POST", "/reload", port: f.adminPort)
        XCTAssertEqual(reply.status, 200)
        XCTAssertEqual(reply.headers["content-type"], "application/json")
        let applied = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(reply.body.utf8)) as? [String: [String]])
        XCTAssertEqual(applied, ["changed": ["idle_timeout", "log_level"], "need_restart": ["port"]])

        let why = "invalid idle_timeout '-1': allowed 0...86400"
        f.control.answerReload(with: .rejected(why))
        reply = try http("POST", "/reload", port: f.adminPort)
        XCTAssertEqual(reply.status, 400)
        XCTAssertEqual(reply.body, why + "\n")
        XCTAssertEqual(f.control.reloads, 2)
    }

    func testWrongMethodUnknownPathAndMalformedRequest() throws {
        let f = try AdminFixture()
        defer { f.stop() }

        var reply = try http("GET", "/drain", port: f.adminPort)
        XCTAssertEqual(reply.status, 405)
        XCTAssertEqual(reply.headers["allow"], "POST")
        XCTAssertFalse(f.control.isDraining, "a GET must not drain")
        reply = try http("POST", "/metrics", port: f.adminPort)
        XCTAssertEqual(reply.status, 405)
        XCTAssertEqual(reply.headers["allow"], "GET")
        XCTAssertEqual(try http("GET", "/nope", port: f.adminPort).status, 404)
        XCTAssertEqual(f.control.reloads, 0)

        // Not HTTP at all: the parser's error is answered 400 and the connection closed.
        let socket = try BlockingSocket(port: f.adminPort)
        try socket.send(Array("THIS IS NOT HTTP\r\n\r\n".utf8))
        let answer = String(decoding: socket.receiveToEnd(), as: UTF8.self)
        XCTAssertTrue(answer.hasPrefix("HTTP/1.1 400"), answer)
        // And the server goes on.
        XCTAssertEqual(try http("GET", "/healthz", port: f.adminPort).status, 200)
    }

    func testStatsJSONHasEveryField() throws {
        let f = try AdminFixture()
        defer { f.stop() }
        let client = try BlockingSocket(port: f.gateway.port)
        let request = frame(seq: 1, length: 50)
        try client.send(request)
        XCTAssertEqual(client.receive(request.count), request)

        let reply = try http("GET", "/stats", port: f.adminPort)
        XCTAssertEqual(reply.status, 200)
        XCTAssertEqual(reply.headers["content-type"], "application/json")
        let object = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(reply.body.utf8)) as? [String: Any])
        let fields = Mirror(reflecting: GatewayStats()).children.compactMap(\.label)
        XCTAssertEqual(Set(object.keys), Set(fields))
        for name in ["connectionsOpen", "accepted", "framesIn", "framesOut", "bytesIn", "bytesOut", "linksUp",
                     "linksConfigured", "shedding", "receiveRingFrames", "sendRingFrames"] {
            XCTAssertNotNil(object[name], name)
        }
        XCTAssertEqual(object["accepted"] as? Int, 1)
        XCTAssertEqual(object["connectionsOpen"] as? Int, 1)
        XCTAssertEqual(object["framesIn"] as? Int, 1)
        XCTAssertEqual(object["bytesIn"] as? Int, 50)
        XCTAssertEqual(object["shedding"] as? Bool, false)
        let closes = try XCTUnwrap(object["closes"] as? [String: Int])
        XCTAssertEqual(Set(closes.keys), Set(CloseCause.allCases.map(\.description)))
        XCTAssertEqual(closes.values.reduce(0, +), 0)
        let inboxes = try XCTUnwrap(object["inboxDepths"] as? [String: Int])
        XCTAssertEqual(Set(inboxes.keys), Set(GatewayStats.stageNames))
    }

    func testLoopbackRule() throws {
        let logger = Logger(label: "test-admin")
        var config = GatewayConfig()
        config.maxConnections = 64
        let control = TestControl(try Gateway(config: config, logger: logger))
        func make(_ host: String, public allowPublic: Bool = false) throws -> AdminServer {
            try AdminServer(host: host, port: 0, allowPublic: allowPublic, control: control, logger: logger)
        }
        for host in ["0.0.0.0", "10.1.2.3", "::", "2001:db8::1"] {
            XCTAssertThrowsError(try make(host), host) { error in
                let e = error as? AdminAddressError
                XCTAssertEqual(e?.key, "admin")
                XCTAssertTrue(e?.description.contains("loopback") == true, "\(error)")
                XCTAssertTrue(e?.description.contains("--admin-public") == true, "\(error)")
            }
            XCTAssertNoThrow(try make(host, public: true), host)
        }
        for host in ["localhost", "127.0.0.1.5", "", "[::1]"] {
            XCTAssertThrowsError(try make(host, public: true), host) { error in
                XCTAssertTrue("\(error)".hasPrefix("invalid admin "), "\(error)")
                XCTAssertTrue("\(error)".contains("IP address"), "\(error)")
            }
        }
        XCTAssertThrowsError(try AdminServer(host: "127.0.0.1", port: 65536, allowPublic: false, control: control,
                                             logger: logger))

        // Every loopback address serves; a public one serves with allowPublic.
        for (host, connect) in [("127.0.0.1", "127.0.0.1"), ("127.0.0.2", "127.0.0.2"), ("::1", "::1"),
                                ("0.0.0.0", "127.0.0.1")] {
            let admin = try make(host, public: host == "0.0.0.0")
            let port = try admin.start()
            XCTAssertGreaterThan(port, 0, host)
            XCTAssertEqual(try http("GET", "/healthz", port: port, host: connect).status, 200, host)
            admin.stop()
        }
    }

    func testBindFailureNamesTheAddressAndStopCloses() throws {
        let f = try AdminFixture()
        let taken = try AdminServer(host: "127.0.0.1", port: f.adminPort, allowPublic: false, control: f.control,
                                    logger: Logger(label: "test-admin"))
        XCTAssertThrowsError(try taken.start()) { error in
            XCTAssertTrue("\(error)".hasPrefix("invalid admin '127.0.0.1:\(f.adminPort)'"), "\(error)")
        }
        // The first server is untouched, and gone once stopped: promptly (2 s at most) even with an idle
        // connection and one holding a request half sent, both closed.
        XCTAssertEqual(try http("GET", "/healthz", port: f.adminPort).status, 200)
        let idle = try BlockingSocket(port: f.adminPort)
        let halfSent = try BlockingSocket(port: f.adminPort)
        try halfSent.send(Array("GET /healthz HTTP/1.1\r\nHost: admin\r\n".utf8))
        let began = Date()
        f.stop()
        XCTAssertLessThan(Date().timeIntervalSince(began), 4)
        XCTAssertEqual(idle.receiveToEnd(), [])
        XCTAssertEqual(halfSent.receiveToEnd(), [])
        XCTAssertThrowsError(try BlockingSocket(port: f.adminPort))
    }
}
