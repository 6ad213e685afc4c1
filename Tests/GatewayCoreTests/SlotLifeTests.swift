import Glibc
import XCTest
@_spi(Benchmarks) @testable import GatewayCore

/// A slot's life (Connections/SlotLife.swift): the transitions in order, the first close winning,
/// and a reclaimed slot equal to one never used.
final class SlotLifeTests: XCTestCase {
    /// Every field but those a slot keeps across reuse by design: its generation, the timer nodes
    /// (still linked in their wheels) and their generations, liburcu's head, the ring indices.
    private func reusable(_ s: UnsafeMutablePointer<ConnectionSlot>) -> String {
        let kept: Set<String> = ["generation", "receiveTimerGeneration", "receiveTimer", "sendTimerGeneration",
                                 "sendTimer", "rcuHead", "table", "receiveIndices", "sendIndices"]
        var text = ""
        for child in Mirror(reflecting: s.pointee).children where !kept.contains(child.label ?? "") {
            text += "\(child.label ?? "?"): "
            dump(child.value, to: &text)
        }
        return text
    }

    func testAReclaimedSlotEqualsAFreshOne() throws {
        let table = ConnectionTable(capacity: 4, ringCapacity: 8)
        let used = try XCTUnwrap(table.allocate())
        let fresh = try XCTUnwrap(table.allocate())
        let s = table.slot(used)
        let generation = s.generation.load(ordering: .relaxed)
        s.accepted()
        // A connection that touched every byte a connection may change (all of it plain data).
        let start = MemoryLayout<ConnectionSlot>.offset(of: \.flags)!
        let end = MemoryLayout<ConnectionSlot>.offset(of: \.receiveTimerGeneration)!
        memset(UnsafeMutableRawPointer(s) + start, 0x5A, end - start)
        XCTAssertNotEqual(s.pointee.deal.dealOffset, 0)
        XCTAssertNotEqual(s.pointee.monitor.fd, -1)
        XCTAssertTrue(s.beginClosing(.peer))
        s.detached()
        XCTAssertTrue(s.beginReclaiming())
        s.resetForReuse()
        XCTAssertEqual(s.state, .free)
        XCTAssertEqual(s.generation.load(ordering: .relaxed), generation &+ 1)
        XCTAssertEqual(reusable(s), reusable(table.slot(fresh)))
        XCTAssertEqual(s.pointee.monitor.fd, -1, "Monitor's part reset as a whole")
    }

    func testTransitionsInOrderAndTheFirstCloseWins() throws {
        let table = ConnectionTable(capacity: 2, ringCapacity: 8)
        let s = table.slot(try XCTUnwrap(table.allocate()))
        XCTAssertEqual(s.state, .free)
        XCTAssertFalse(s.beginClosing(.idle), "a free slot cannot close")
        s.accepted()
        XCTAssertEqual(s.state, .open)
        XCTAssertNil(s.endings.closeCause)
        XCTAssertTrue(s.beginClosing(.flood))
        XCTAssertFalse(s.beginClosing(.idle))
        XCTAssertEqual(s.state, .closing)
        XCTAssertEqual(s.endings.closeCause, .flood)
        XCTAssertFalse(s.beginReclaiming(), "not detached yet")
        s.detached()
        XCTAssertTrue(s.beginReclaiming())
        XCTAssertFalse(s.beginReclaiming(), "finalized once")
        s.resetForReuse()
        XCTAssertEqual(s.state, .free)
        XCTAssertNil(s.endings.closeCause)
    }

    func testALinkWhoseConnectFailedIsFreedFromConnecting() throws {
        let table = ConnectionTable(capacity: 2, ringCapacity: 8)
        let s = table.slot(try XCTUnwrap(table.allocate()))
        s.beginConnecting()
        XCTAssertEqual(s.state, .connecting)
        s.resetForReuse()
        XCTAssertEqual(s.state, .free)
        s.beginConnecting()
        s.connected()
        XCTAssertEqual(s.state, .open)
    }

    func testEndingsKeepTheFirstCauseEach() throws {
        let table = ConnectionTable(capacity: 2, ringCapacity: 8)
        let e = table.slot(try XCTUnwrap(table.allocate())).endings
        XCTAssertFalse(e.hasInputEnded)
        XCTAssertTrue(e.endInput(.peer))
        XCTAssertFalse(e.endInput(.shutdown))
        XCTAssertEqual(e.inputEnded, .peer)
        XCTAssertFalse(e.isFlushing)
        XCTAssertTrue(e.closeAfterReplies(.handler))
        XCTAssertFalse(e.closeAfterReplies(.kicked))
        XCTAssertEqual(e.flushThenClose, .handler)
        XCTAssertTrue(e.beginLingering(.handler))
        XCTAssertFalse(e.beginLingering(.peer))
        XCTAssertEqual(e.lingering, .handler)
        XCTAssertFalse(e.hungUp)
        e.markHangup()
        XCTAssertTrue(e.hungUp)
    }
}
