import Logging
import XCTest
@_spi(Benchmarks) @testable import GatewayCore

/// A Deal stage driven by hand on the test's own thread: no thread of the engine runs, so what a role
/// does with a frame is arranged by construction (bytes put on a receive ring, Deal's turn called,
/// the send rings read as Send would), never by timing.
final class DealBench {
    let engine: Engine
    var deal: DealStage { engine.deal }
    var table: ConnectionTable { engine.table }

    init(handler: GatewayHandler = EchoHandler(), _ configure: (inout GatewayConfig) -> Void = { _ in }) throws {
        var config = GatewayConfig()
        config.maxConnections = 16
        config.ringCapacity = 8
        configure(&config)
        engine = try Engine(config: config, handler: handler, logger: Logger(label: "deal-bench"))
    }

    /// An open connection holding `kind` (an upstream link at `position`).
    func open(_ kind: SlotKind, position: UInt16 = 0) throws -> ConnectionID {
        let index = try XCTUnwrap(table.allocate(), "a free slot")
        let s = table.slot(index)
        s.pointee.monitor = MonitorPart(fd: -1, peer: PeerAddress(ipv4: 0, port: 0), kind: kind, linkPosition: position)
        s.accepted()
        return ConnectionID(index: index, generation: s.generation.load(ordering: .relaxed))
    }

    /// `bytes` arrive on `id` as Receive leaves them: one descriptor on its receive ring.
    func arrive(_ bytes: [UInt8], on id: ConnectionID) {
        let chunk = engine.pool.allocate(capacity: bytes.count)
        bytes.withUnsafeBytes { chunk.bytes.copyMemory(from: $0.baseAddress!, byteCount: bytes.count) }
        XCTAssertTrue(table.receiveRing(id.index).push(FrameDescriptor(chunk: chunk, offset: 0,
                                                                        length: UInt32(bytes.count))))
    }

    /// Deal's turn for `id`, and the end of its batch (link output goes on the links' rings).
    func dealTurn(_ id: ConnectionID) {
        deal.service(id, table.slot(id.index))
        deal.batchDone()
    }

    /// The frames queued on `id`'s send ring, taken off it as Send would write them.
    func sent(_ id: ConnectionID) -> [[UInt8]] {
        let ring = table.sendRing(id.index)
        var frames: [[UInt8]] = []
        while ring.count > 0 {
            let d = ring.peek(0).pointee
            var offset = 0
            while offset < Int(d.length) {
                let length = Int(FrameHeader.length(at: d.start + offset))
                frames.append(Array(UnsafeRawBufferPointer(start: d.start + offset, count: length)))
                offset += length
            }
            ring.pop(1)
            engine.pool.release(d.chunk)
        }
        return frames
    }

    /// `id`'s send ring taken up but for `free` entries, as by output Send has not written yet.
    func fill(_ id: ConnectionID, leaving free: Int) {
        let ring = table.sendRing(id.index)
        let filler = engine.pool.allocate(capacity: 64)
        while ring.freeCount > free {
            filler.retain()
            XCTAssertTrue(ring.push(FrameDescriptor(chunk: filler, offset: 0, length: 0)))
        }
        engine.pool.release(filler)
    }

    func counter(_ name: Counters.Name) -> UInt64 { engine.counters.value(name) }

    /// A client frame: header and body.
    static func frame(cmd: UInt16, seq: UInt32, body: [UInt8] = [], status: UInt32 = 0) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: FrameHeader.size + body.count)
        bytes.withUnsafeMutableBytes { p in
            FrameHeader(length: UInt32(p.count), seq: seq, cmd: cmd, status: status).encode(into: p.baseAddress!)
        }
        bytes.replaceSubrange(FrameHeader.size..., with: body)
        return bytes
    }

    /// A link message, with `inner` (a client frame) after it for DATA and PUSH.
    static func link(_ message: LinkMessage, inner: [UInt8] = []) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: message.encodedLength)
        bytes.withUnsafeMutableBytes { message.encode(into: $0.baseAddress!) }
        return bytes + inner
    }

    static func decode(_ bytes: [UInt8]) -> LinkMessage? {
        bytes.withUnsafeBytes { p in
            if case .success(let message) = LinkMessage.decode(p.baseAddress!, maxFrame: 1 << 20) { return message }
            return nil
        }
    }

    static func hello(_ bytes: [UInt8]?) -> LinkMessage.Hello? {
        guard let bytes, case .hello(let hello)? = decode(bytes) else { return nil }
        return hello
    }

    enum Unexpected: Error { case role }

    static func header(_ bytes: [UInt8]) -> FrameHeader {
        bytes.withUnsafeBytes { FrameHeader(decoding: $0.baseAddress!) }
    }
}
