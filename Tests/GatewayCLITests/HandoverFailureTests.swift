import Foundation
import GatewayCore
import Glibc
import Logging
import TestSupport
import Testing

@testable import GatewayCLI

/// The old process's side of a hand-over that fails part way (docs/HANDOVER.md), in process: gateway A
/// with its control socket, and a successor played by the test, which takes one batch of connections and
/// then goes away (its socket and the descriptors closed, as a killed process's are) or stops answering.
@Suite(.serialized) struct HandoverFailureTests {
    static let clients = 300

    /// A and its clients, each served once; the path of its control socket.
    private func startA(_ poller: PollerKind, handoverSeconds: Int)
        throws -> (Gateway, ControlServer, String, [TestClient]) {
        var config = GatewayConfig()
        config.port = 0
        config.poller = poller
        config.maxConnections = 1000
        config.drainTimeout = 2
        config.tickMilliseconds = 20
        let gateway = try Gateway(config: config, logger: Logger(label: "a"))
        try gateway.start()
        let path = "/tmp/gateway-handover-\(UUID().uuidString.prefix(8)).sock"
        let control = try ControlServer(path: path, successor: false, generation: 0,
                                        listeners: gateway.listenerDescriptors, drainSeconds: 2,
                                        logger: Logger(label: "a"), gateway: gateway,
                                        handoverSeconds: handoverSeconds) { gateway.drainForRestart() }
        control.start()
        let clients = try (0..<Self.clients).map { _ in try TestClient(port: gateway.port) }
        for (i, c) in clients.enumerated() {
            #expect(c.echoes(TestClient.frame(seq: UInt32(i), bodySize: 8)), "client \(i) served by A")
        }
        return (gateway, control, path, clients)
    }

    /// The successor's side up to its first batch, which it returns (its descriptors open here).
    private func takeOneBatch(_ path: String) throws -> (UnixStream, [MovedConnection]) {
        let stream = try UnixStream.connect(to: path)
        try stream.setTimeout(seconds: 20)
        try stream.send(.takeOver(version: HandoverLine.version))
        let listeners = try #require(try stream.receive())
        for fd in listeners.descriptors { close(fd) }
        try stream.send(.startedMoving)
        #expect(try stream.receive().map { HandoverLine(parsing: $0.line) } == .moving)
        try stream.send(.adopted(count: 0))
        return (stream, try stream.receiveBatch())
    }

    @Test(.timeLimit(.minutes(1)), arguments: [PollerKind.epoll, .poll])
    func newProcessGoneMidwayLeavesTheRestServed(_ poller: PollerKind) throws {
        let (a, control, path, clients) = try startA(poller, handoverSeconds: 20)
        defer {
            control.stop()
            a.stop()
        }
        let (stream, batch) = try takeOneBatch(path)
        #expect(batch.count == ConnectionSender.batchSize)
        #expect(!a.isAccepting, "A holds accepting while connections move")
        // Killed: its socket and every descriptor it held close.
        for moved in batch { close(moved.fd) }
        shutdown(stream.fd, Int32(SHUT_RDWR))

        #expect(waitUntil(seconds: 10) { a.isAccepting }, "A accepts again")
        let moved = Set(batch.map(\.peer.port))
        for (i, c) in clients.enumerated() {
            let echoed = c.echoes(TestClient.frame(seq: UInt32(1000 + i), bodySize: 8))
            if moved.contains(c.localPort) {
                #expect(!echoed && c.lastNilWasClose, "client \(i) was handed over: lost with the new process")
            } else {
                #expect(echoed, "client \(i) was not handed over: A serves it on")
            }
        }
        #expect(try TestClient(port: a.port).echo(1), "a new client is served by A")
        #expect(!control.handedOver, "A stays in charge: a later take-over may follow")
        #expect(!a.isDraining)
        #expect(a.stats().closes(.handedOver) == UInt64(batch.count))
        #expect(a.stats().handedOver == UInt64(batch.count))
        #expect(a.stats().handoverLost == UInt64(batch.count), "the batch is lost with the new process")
        #expect(a.stats().reconnectNotices == 0)
    }

    @Test(.timeLimit(.minutes(1)), arguments: [PollerKind.epoll, .poll])
    func stalledHandoverDrainsTheRest(_ poller: PollerKind) throws {
        let (a, control, path, clients) = try startA(poller, handoverSeconds: 1)
        defer {
            control.stop()
            a.stop()
        }
        let (stream, batch) = try takeOneBatch(path)
        defer {
            for moved in batch { close(moved.fd) }
            _ = stream
        }
        #expect(batch.count == ConnectionSender.batchSize)
        // No ADOPTED: after handover_timeout A drains what it still holds.
        let moved = Set(batch.map(\.peer.port))
        for (i, c) in clients.enumerated() where !moved.contains(c.localPort) {
            let notice = c.receiveFrame()
            let header = notice.map { n in n.withUnsafeBytes { FrameHeader(decoding: $0.baseAddress!) } }
            #expect(header?.cmd == ReservedCommand.pleaseReconnect, "client \(i) kept by A is asked to reconnect")
        }
        #expect(control.handedOver)
        #expect(a.stats().reconnectNotices == UInt64(Self.clients - batch.count))
        #expect(a.stats().handedOver == UInt64(batch.count))
        #expect(a.stats().handoverLost == UInt64(batch.count), "never confirmed: counted lost")
        #expect(waitUntil(seconds: 10) { a.hasStopped }, "A stops once its drain is over")
    }
}
