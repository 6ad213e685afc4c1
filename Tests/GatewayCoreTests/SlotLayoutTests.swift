import XCTest
@_spi(Benchmarks) @testable import GatewayCore

/// The slot's size, pinned: an idle connection costs its slot plus what its rings still hold, and
/// the gateway's budget for that is 512 bytes (perf/RESULTS.md, idle memory). A field that grows
/// the slot fails here first; docs/ARCHITECTURE.md shows the layout these numbers come from.
final class SlotLayoutTests: XCTestCase {
    func testTheSlotTakesFiveCacheLines() {
        let table = ConnectionTable(capacity: 2, ringCapacity: 8)
        XCTAssertEqual(table.bytesPerSlot, 320)
        XCTAssertEqual(MemoryLayout<ConnectionSlot>.size, 288)
        // Deal's per-turn fields in one cache line, starting one.
        XCTAssertLessThanOrEqual(MemoryLayout<DealPart>.size, 64)
        XCTAssertEqual(MemoryLayout<ConnectionSlot>.offset(of: \.deal).map { $0 % 64 }, 0)
        XCTAssertEqual(MemoryLayout<MonitorPart>.size, 33)
        XCTAssertEqual(MemoryLayout<ReceivePart>.size, 37)
        XCTAssertEqual(MemoryLayout<DealColdPart>.stride, 96)
    }

    func testAColdPartIsFreshForEachConnectionAndOnlyWhenUsed() throws {
        let table = ConnectionTable(capacity: 4, ringCapacity: 8)
        let index = try XCTUnwrap(table.allocate())
        let s = table.slot(index)
        XCTAssertEqual(s.pointee.index, index)
        s.accepted()
        XCTAssertFalse(s.pointee.deal.coldReady, "an echo connection never takes its cold part")
        let c = table.cold(s)
        XCTAssertTrue(s.pointee.deal.coldReady)
        (c.pointee.uid, c.pointee.roomsHead, c.pointee.waitSince, c.pointee.pushDrops) = (7, 3, 99, 5)
        XCTAssertTrue(s.beginClosing(.peer))
        s.detached()
        XCTAssertTrue(s.beginReclaiming())
        s.resetForReuse()
        XCTAssertFalse(s.pointee.deal.coldReady)
        XCTAssertEqual(c.pointee.uid, 7, "the reset leaves the side table alone")
        s.accepted()
        let again = table.cold(s)
        XCTAssertEqual(again, c)
        XCTAssertEqual(again.pointee.uid, 0)
        XCTAssertEqual(again.pointee.roomsHead, SessionDirectory.none)
        XCTAssertEqual(again.pointee.waitSince, 0)
        XCTAssertEqual(again.pointee.pushDrops, 0)
    }
}
