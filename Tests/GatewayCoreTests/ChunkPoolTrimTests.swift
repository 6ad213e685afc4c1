import XCTest
@_spi(Benchmarks) @testable import GatewayCore

/// ChunkPool.trim: free chunks that no allocation needed between two trims go back to malloc; the
/// ones traffic keeps taking stay. Driven by calls, not by time.
final class ChunkPoolTrimTests: XCTestCase {
    func testABurstsBlocksGoBackOnceASecondPassedWithoutThem() {
        let pool = ChunkPool()
        let burst = (0..<10).map { _ in pool.allocate(capacity: ChunkPool.blockCapacity) }
        burst.forEach { pool.release($0) }
        // The ten free blocks were all needed before this trim (the list was empty): none go.
        XCTAssertEqual(pool.trim(), 0)
        // Nothing took one since: all but the floor of two go.
        XCTAssertEqual(pool.trim(), 8 * ChunkPool.blockCapacity)
        XCTAssertEqual(pool.trim(), 0, "the floor stays")
    }

    func testChunksTrafficKeepsTakingStay() {
        let pool = ChunkPool()
        let four = (0..<4).map { _ in pool.allocate(capacity: 100) }
        four.forEach { pool.release($0) }
        XCTAssertEqual(pool.trim(floor: 0), 0)
        // Between trims, traffic takes three at once: one of the four was not needed.
        let taken = (0..<3).map { _ in pool.allocate(capacity: 100) }
        taken.forEach { pool.release($0) }
        XCTAssertEqual(pool.trim(floor: 0), 256)
        let again = pool.allocate(capacity: 100)
        XCTAssertEqual(again.sizeClass, 0)
        pool.release(again)
        XCTAssertEqual(pool.bytesInUse, 0)
    }
}
