import Foundation
import Glibc
import XCTest
@_spi(Benchmarks) @testable import GatewayCore

/// Frames begun and never finished (slowloris): frame_timeout closes them, memory
/// grows with what arrived, and max_pending_bytes caps all of them together.
final class IncompleteFrameTests: XCTestCase {
    /// The header of a frame that claims `length` bytes, plus `extra` bytes of its body.
    private func announce(_ length: UInt32, extra: Int) -> [UInt8] {
        TestClient.rawHeader(length: length) + [UInt8](repeating: 7, count: extra)
    }

    /// The chunk for an incomplete frame grows with the bytes that arrived (doubling),
    /// not with the length the header claims; the completed frame is intact.
    func testAnIncompleteFrameHoldsWhatArrivedNotWhatItClaims() {
        let pool = ChunkPool()
        var assembly = FrameAssembly()
        let length = 1 << 20
        var frame = TestClient.rawHeader(length: UInt32(length))
        frame += (0..<(length - frame.count)).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        var at = 0
        var out: [UInt8] = []
        for piece in [1, 3, 10, 100, 1000, 5000, 60_000, 200_000, 300_000, length] {
            let n = min(piece, frame.count - at)
            guard n > 0 else { break }
            let block = pool.allocate(capacity: ChunkPool.blockCapacity)
            var offset = 0
            while offset < n {  // a read lands in a 64 KiB block at most
                let m = min(n - offset, ChunkPool.blockCapacity)
                frame[(at + offset)..<(at + offset + m)].withUnsafeBytes {
                    block.bytes.copyMemory(from: $0.baseAddress!, byteCount: m)
                }
                _ = assembly.consume(block: block, start: 0, count: m, maxFrame: length, pool: pool) { d in
                    out += UnsafeRawBufferPointer(start: d.start, count: Int(d.length))
                    pool.release(d.chunk)
                }
                offset += m
            }
            pool.release(block)
            at += n
            if assembly.isPartial {
                // Doubling, rounded up to the pool's size classes (4x apart below 64 KiB).
                XCTAssertLessThanOrEqual(assembly.heldBytes, max(FrameAssembly.firstCapacity, 4 * at),
                                         "after \(at) bytes of \(length)")
            }
        }
        XCTAssertFalse(assembly.isPartial)
        XCTAssertEqual(out, frame, "the frame arrives whole")
    }

    func testATrickledFrameIsClosedByFrameTimeoutWhileAWitnessIsServed() throws {
        for poller in PollerKind.allCases {
            let gateway = try startGateway(poller) {
                $0.maxFrame = 1 << 20
                $0.frameTimeout = 1
                $0.idleTimeout = 300
            }
            defer { gateway.stop() }
            let witness = try TestClient(port: gateway.port)
            let loris = try TestClient(port: gateway.port)
            try loris.send(announce(1 << 20, extra: 10))
            var closed = false
            for _ in 0..<100 where !closed {  // a byte every 50 ms: never idle, never done
                usleep(50_000)
                closed = (try? loris.send([1])) == nil || gateway.stats().closes(.frameTimeout) == 1
                XCTAssertTrue(witness.echoes(TestClient.frame(seq: 1, bodySize: 20)), "\(poller): witness")
            }
            XCTAssertTrue(waitUntil { gateway.stats().closes(.frameTimeout) == 1 }, "\(poller): closed by frame_timeout")
            XCTAssertTrue(loris.isClosedByPeer(), "\(poller)")
            XCTAssertTrue(waitUntil { gateway.stats().pendingBytes == 0 }, "\(poller): its bytes were released")
        }
    }

    /// 2,000 connections each announce a 1 MiB frame and send a little of it: the
    /// bytes held stay within the cap (the biggest holders closed first), far below
    /// what the headers claim, and frame_timeout closes the rest.
    func testACrowdOfIncompleteFramesStaysWithinMaxPendingBytes() throws {
        let cap = 1 << 20
        let gateway = try startGateway(.epoll) {
            $0.maxConnections = 2100
            $0.maxFrame = 1 << 20
            $0.maxPendingBytes = cap
            $0.frameTimeout = 8
        }
        defer { gateway.stop() }
        let witness = try TestClient(port: gateway.port)
        var crowd: [TestClient] = []
        for i in 0..<2000 {
            let c = try TestClient(port: gateway.port)
            try c.send(announce(1 << 20, extra: i % 10 == 0 ? 4000 : 100))  // every tenth holds more
            crowd.append(c)
        }
        XCTAssertTrue(waitUntil { gateway.stats().pendingBytes > 0 })
        XCTAssertTrue(waitUntil { gateway.stats().closes(.pendingBytes) > 0 }, "the cap was enforced")
        // The closed ones' bytes return at reclamation, a grace period later.
        XCTAssertTrue(waitUntil(seconds: 5) { gateway.stats().pendingBytes <= UInt64(cap) },
                      "held within the cap: \(gateway.stats().pendingBytes)")
        XCTAssertEqual(gateway.stats().closes(.frameTimeout), 0, "before frame_timeout did anything")
        XCTAssertTrue(witness.echoes(TestClient.frame(seq: 1, bodySize: 100)), "the witness is served")
        XCTAssertTrue(waitUntil(seconds: 30) {
            let s = gateway.stats()
            return s.closes(.pendingBytes) + s.closes(.frameTimeout) == 2000
        }, "every one of the crowd closed: \(gateway.stats().closes)")
        XCTAssertTrue(waitUntil { gateway.stats().pendingBytes == 0 })
        XCTAssertTrue(witness.echoes(TestClient.frame(seq: 2, bodySize: 100)), "still served")
        for c in crowd { c.close() }
    }
}
