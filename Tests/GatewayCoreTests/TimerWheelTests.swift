import XCTest
@_spi(Benchmarks) @testable import GatewayCore

final class TimerWheelTests: XCTestCase {
    /// A wheel over `count` nodes laid out at a stride wider than a node, as in the connection table.
    final class Fixture {
        let count: Int
        let stride = 64
        let memory: UnsafeMutableRawPointer
        let wheel: TimerWheel

        init(nodes count: Int, buckets: Int) {
            self.count = count
            memory = .allocate(byteCount: stride * count, alignment: 16)
            for i in 0..<count {
                (memory + i * stride).bindMemory(to: TimerNode.self, capacity: 1).initialize(to: TimerNode())
            }
            wheel = TimerWheel(nodes: TimerNodes(base: memory, stride: stride), bucketCount: buckets)
        }

        deinit { memory.deallocate() }

        /// Advances one tick at a time to `tick`, returning (tick, index) for every firing.
        func run(to tick: UInt64, onFire: (UInt32) -> Void = { _ in }) -> [(UInt64, UInt32)] {
            var fired: [(UInt64, UInt32)] = []
            wheel.advance(to: tick) { i in
                fired.append((wheel.now, i))
                onFire(i)
            }
            return fired
        }
    }

    private func ticks(_ fired: [(UInt64, UInt32)]) -> [UInt64] { fired.map(\.0) }
    private func indices(_ fired: [(UInt64, UInt32)]) -> [UInt32] { fired.map(\.1) }

    func testScheduleFiresExactlyOnTimeAndOnce() {
        let f = Fixture(nodes: 8, buckets: 16)
        f.wheel.schedule(3, after: 5)
        XCTAssertTrue(f.wheel.isArmed(3))
        XCTAssertEqual(f.wheel.count, 1)
        XCTAssertTrue(f.run(to: 4).isEmpty)
        let fired = f.run(to: 5)
        XCTAssertEqual(indices(fired), [3])
        XCTAssertEqual(ticks(fired), [5])
        XCTAssertFalse(f.wheel.isArmed(3))
        XCTAssertEqual(f.wheel.count, 0)
        XCTAssertTrue(f.run(to: 100).isEmpty, "fires once")
        XCTAssertEqual(f.wheel.now, 100)
    }

    func testZeroDelayMeansNextTick() {
        let f = Fixture(nodes: 2, buckets: 8)
        _ = f.run(to: 10)
        f.wheel.schedule(1, after: 0)
        let fired = f.run(to: 11)
        XCTAssertEqual(indices(fired), [1])
        XCTAssertEqual(ticks(fired), [11])
    }

    func testCancel() {
        let f = Fixture(nodes: 8, buckets: 8)
        for i: UInt32 in 0..<5 { f.wheel.schedule(i, after: 3) }  // one bucket, five nodes
        XCTAssertEqual(f.wheel.count, 5)
        f.wheel.cancel(2)  // middle of the bucket's list
        f.wheel.cancel(4)  // its head
        f.wheel.cancel(0)  // its tail
        f.wheel.cancel(0)  // again: nothing
        f.wheel.cancel(7)  // never armed: nothing
        XCTAssertEqual(f.wheel.count, 2)
        XCTAssertFalse(f.wheel.isArmed(2))
        XCTAssertEqual(Set(indices(f.run(to: 3))), [1, 3])
        XCTAssertEqual(f.wheel.count, 0)
    }

    func testRescheduleReplacesEarlierArming() {
        let f = Fixture(nodes: 4, buckets: 8)
        f.wheel.schedule(1, after: 5)
        f.wheel.schedule(1, after: 10)
        XCTAssertEqual(f.wheel.count, 1)
        let fired = f.run(to: 20)
        XCTAssertEqual(indices(fired), [1])
        XCTAssertEqual(ticks(fired), [10])
        // Earlier than before, too.
        f.wheel.schedule(2, after: 9)
        f.wheel.schedule(2, after: 2)
        XCTAssertEqual(ticks(f.run(to: 40)), [22])
    }

    func testDelaysBeyondTheBucketCount() {
        let f = Fixture(nodes: 8, buckets: 8)
        let delays: [UInt32: UInt64] = [0: 8, 1: 16, 2: 20, 3: 7, 4: 9, 5: 1000, 6: 64 + 3]
        for (i, d) in delays { f.wheel.schedule(i, after: d) }
        XCTAssertEqual(f.wheel.count, delays.count)
        // In steps of various sizes, including jumps over whole turns.
        var fired: [(UInt64, UInt32)] = []
        for stop: UInt64 in [3, 8, 9, 30, 66, 67, 500, 2000] { fired += f.run(to: stop) }
        XCTAssertEqual(fired.count, delays.count)
        for (tick, i) in fired { XCTAssertEqual(tick, delays[i], "timer \(i)") }
        XCTAssertEqual(ticks(fired), ticks(fired).sorted(), "fired in tick order")
        XCTAssertEqual(f.wheel.count, 0)
    }

    func testManyTimersRandomized() {
        let f = Fixture(nodes: 200, buckets: 16)
        var random = TestRandom(seed: 11)
        var due: [UInt32: UInt64] = [:]
        var fired = 0
        for step in 0..<400 {
            for _ in 0..<random.below(6) {
                let i = UInt32(random.below(200))
                if random.below(4) == 0 {
                    f.wheel.cancel(i)
                    due[i] = nil
                } else {
                    let d = UInt64(random.below(60))
                    f.wheel.schedule(i, after: d)
                    due[i] = f.wheel.now + max(1, d)
                }
            }
            XCTAssertEqual(f.wheel.count, due.count, "step \(step)")
            for (tick, i) in f.run(to: f.wheel.now + UInt64(random.below(5))) {
                XCTAssertEqual(due[i], tick, "timer \(i) fired at \(tick)")
                due[i] = nil
                fired += 1
            }
        }
        for (tick, i) in f.run(to: f.wheel.now + 100) {
            XCTAssertEqual(due[i], tick)
            due[i] = nil
        }
        XCTAssertTrue(due.isEmpty, "never fired: \(due)")
        XCTAssertGreaterThan(fired, 100)
    }

    func testReschedulingFromInsideFire() {
        let f = Fixture(nodes: 4, buckets: 8)
        f.wheel.schedule(0, after: 3)
        f.wheel.schedule(1, after: 3)
        var rounds = 0
        let fired = f.run(to: 40) { i in
            if i == 0 && rounds < 5 {
                rounds += 1
                f.wheel.schedule(0, after: 8)  // a whole turn: back into the bucket being walked
            }
            if i == 1 { f.wheel.schedule(1, after: 5) }  // periodic
        }
        XCTAssertEqual(fired.filter { $0.1 == 0 }.map(\.0), [3, 11, 19, 27, 35, 43].filter { $0 <= 40 })
        XCTAssertEqual(fired.filter { $0.1 == 1 }.map(\.0), Array(stride(from: 3, through: 40, by: 5)))
        XCTAssertEqual(f.wheel.count, 2)
    }

    /// The wheel's contract: `fire` may cancel other timers. One cancelled
    /// while due on the same tick must not fire.
    func testCancellingAnotherDueTimerFromInsideFire() {
        for order in 0..<2 {
            let f = Fixture(nodes: 4, buckets: 8)
            // Same expiry, same bucket; the bucket's list is newest first.
            if order == 0 {
                f.wheel.schedule(1, after: 2)
                f.wheel.schedule(0, after: 2)
            } else {
                f.wheel.schedule(0, after: 2)
                f.wheel.schedule(1, after: 2)
            }
            var firedIndices: [UInt32] = []
            _ = f.run(to: 5) { i in
                firedIndices.append(i)
                f.wheel.cancel(i == 0 ? 1 : 0)  // whichever fires first cancels the other
            }
            XCTAssertEqual(firedIndices.count, 1, "insertion order \(order): fired \(firedIndices) although cancelled")
            XCTAssertEqual(f.wheel.count, 0)
        }
    }

    func testSchedulingAnotherTimerFromInsideFire() {
        let f = Fixture(nodes: 4, buckets: 8)
        f.wheel.schedule(0, after: 2)
        let fired = f.run(to: 20) { i in
            if i == 0 { f.wheel.schedule(2, after: 0) }  // next tick, not this one
            if i == 2 { f.wheel.schedule(3, after: 8) }  // a whole turn
        }
        XCTAssertEqual(fired.map(\.0), [2, 3, 11])
        XCTAssertEqual(fired.map(\.1), [0, 2, 3])
    }
}
