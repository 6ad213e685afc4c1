import CLinux
import CURCU
import Foundation
import Glibc
import XCTest
@_spi(Benchmarks) @testable import GatewayCore

/// SpinLock, Inbox, StageInbox gates and the Doorbell, alone and under
/// several threads at once.
final class SyncTests: XCTestCase {
    final class Shared: @unchecked Sendable {  // guarded by `lock` in the test
        var value = 0
    }

    func testSpinLockMutualExclusion() {
        let lock = SpinLock()
        let shared = Shared()
        runThreads(3) { _ in
            for _ in 0..<30_000 { lock.withLock { shared.value += 1 } }
        }
        XCTAssertEqual(shared.value, 90_000)
    }

    func testInboxPushDrainOrderAndEmptyEdge() {
        let inbox = Inbox(capacity: 8)
        XCTAssertTrue(inbox.isEmpty)
        XCTAssertEqual(inbox.drain { _ in XCTFail("nothing to drain") }, 0)
        XCTAssertTrue(inbox.push(5), "empty -> non-empty: ring")
        XCTAssertFalse(inbox.push(3))
        XCTAssertFalse(inbox.push(UInt64.max))
        XCTAssertFalse(inbox.isEmpty)
        var got: [UInt64] = []
        XCTAssertEqual(inbox.drain { got.append($0) }, 3)
        XCTAssertEqual(got, [5, 3, UInt64.max])
        XCTAssertTrue(inbox.isEmpty)
        // Fill to capacity, twice (both buffers).
        for round in 0..<2 {
            for i in 0..<8 { XCTAssertEqual(inbox.push(UInt64(i + round)), i == 0) }
            got = []
            XCTAssertEqual(inbox.drain { got.append($0) }, 8)
            XCTAssertEqual(got, (0..<8).map { UInt64($0 + round) })
        }
    }

    func testStageInboxGateKeepsAnIdOnceAndReopens() {
        let table = ConnectionTable(capacity: 4, ringCapacity: 4)
        let stage = StageInbox(name: "test", gate: \.sendGate, capacity: 4)
        let wakes = AtomicInt()
        stage.doorbell.waker = { wakes.add() }
        let a = ConnectionID(index: 1, generation: 9)
        let b = ConnectionID(index: 2, generation: 0)
        XCTAssertFalse(stage.doorbell.announceSleep { !stage.inbox.isEmpty })
        stage.post(table.slot(1), a)
        XCTAssertEqual(wakes.load(), 1, "a sleeping owner is woken by the first post")
        XCTAssertTrue(stage.doorbell.announceSleep { !stage.inbox.isEmpty }, "and sees the work when it next looks")
        stage.post(table.slot(1), a)
        stage.post(table.slot(2), b)
        stage.post(table.slot(1), a)
        XCTAssertEqual(wakes.load(), 1, "woken on the empty-to-non-empty edge only")
        stage.doorbell.announceAwake()
        var got: [ConnectionID] = []
        _ = stage.inbox.drain { got.append(ConnectionID(packed: $0)) }
        XCTAssertEqual(got, [a, b], "each id once, in order, generation kept")
        // The gate stays shut until the consumer opens it.
        stage.post(table.slot(1), a)
        XCTAssertTrue(stage.inbox.isEmpty)
        stage.openGate(table.slot(1))
        stage.post(table.slot(1), a)
        XCTAssertFalse(stage.inbox.isEmpty)
        XCTAssertEqual(wakes.load(), 1, "an owner that is awake is not woken")
        _ = stage.inbox.drain { _ in }
        stage.openGate(table.slot(1))
        XCTAssertFalse(stage.doorbell.announceSleep { !stage.inbox.isEmpty })
        stage.post(table.slot(1), a)
        XCTAssertEqual(wakes.load(), 2)
        // Other gates of the same slot are independent.
        XCTAssertEqual(table.slot(2).atomic(\.receiveGate).load(ordering: .relaxed), 0)
        XCTAssertEqual(table.slot(2).atomic(\.sendGate).load(ordering: .relaxed), 1)
    }

    func testTickIsPublished() {
        let stage = StageInbox(name: "test", gate: \.dealGate, capacity: 4)
        XCTAssertEqual(stage.currentTick, 0)
        stage.advanceTick(to: 7)
        XCTAssertEqual(stage.currentTick, 7)
        // With timers armed, a tick wakes a sleeping stage.
        stage.armedTimers.store(1, ordering: .relaxed)
        let woke = AtomicInt()
        runThreads(2) { role in
            if role == 0 {
                gw_rcu_register_thread()
                defer { gw_rcu_unregister_thread() }
                stage.doorbell.sleep { stage.currentTick != 7 }
                woke.store(1)
            } else {
                waitUntil(seconds: 2) { stage.doorbell.isAsleep }
                stage.advanceTick(to: 8)
                if !waitUntil(seconds: 5, { woke.load() == 1 }) {
                    XCTFail("tick did not wake the stage")
                    stage.advanceTick(to: 9)
                    stage.doorbell.ring()
                }
            }
        }
        XCTAssertEqual(woke.load(), 1)
    }

    /// Three producers post events for many slots while one consumer drains,
    /// opening gates as it goes and sleeping on the doorbell when idle. Every
    /// event must be seen (an id posted after its last drain is seen again),
    /// no id may be in the inbox twice at once, and a producer waiting for its
    /// own event to be seen must never wait forever (no lost wake-up).
    func testGatesAndDoorbellUnderThreeProducers() {
        let slots = 300
        let table = ConnectionTable(capacity: slots, ringCapacity: 4)
        // Capacity exactly one entry per slot: a second copy of an id would overflow it.
        let stage = StageInbox(name: "test", gate: \.receiveGate, capacity: slots)
        let posted = (0..<slots).map { _ in AtomicInt() }
        let seen = (0..<slots).map { _ in AtomicInt() }
        let producersDone = AtomicInt()
        let duplicates = AtomicInt()
        let stuck = AtomicInt()
        let regressions = AtomicInt()
        let perProducer = 40_000

        let consumer = OSThread(name: "test-consumer") {
            gw_rcu_register_thread()
            defer { gw_rcu_unregister_thread() }
            var batchOf = [Int](repeating: -1, count: slots)
            var batch = 0
            var random = TestRandom(seed: 99)
            while true {
                batch += 1
                let n = stage.inbox.drain { packed in
                    let id = ConnectionID(packed: packed)
                    let i = Int(id.index)
                    if batchOf[i] == batch { duplicates.add() }
                    batchOf[i] = batch
                    if random.below(16) == 0 { sched_yield() }  // vary where producers land
                    stage.openGate(table.slot(id.index))
                    let now = posted[i].load()
                    if now < seen[i].load() { regressions.add() }
                    seen[i].store(now)
                }
                if n > 0 { continue }
                if producersDone.load() == 1 && stage.inbox.isEmpty { return }
                stage.doorbell.sleep { !stage.inbox.isEmpty || producersDone.load() == 1 }
            }
        }
        runThreads(3) { p in
            var random = TestRandom(seed: UInt64(p) &* 7919 &+ 1)
            for e in 0..<perProducer {
                let i = random.below(slots)
                let count = posted[i].add()
                stage.post(table.slot(UInt32(i)), ConnectionID(index: UInt32(i), generation: 0))
                if e % 64 == 63 {
                    // Wait (bounded) until this very event has been seen.
                    if !spinUntil(seconds: 5, { seen[i].load() >= count }) {
                        stuck.add()
                        return
                    }
                }
            }
        }
        producersDone.store(1)
        stage.doorbell.ring()
        consumer.join()

        XCTAssertEqual(stuck.load(), 0, "a posted event was not seen for 5 s: lost wake-up or lost event")
        XCTAssertEqual(duplicates.load(), 0, "an id was in the inbox twice at once")
        XCTAssertEqual(regressions.load(), 0)
        var missed = 0
        for i in 0..<slots where seen[i].load() != posted[i].load() { missed += 1 }
        XCTAssertEqual(missed, 0, "slots whose last events were never seen")
        XCTAssertEqual(posted.reduce(0) { $0 + $1.load() }, 3 * perProducer)
    }

    /// Many rounds of: the consumer goes to sleep, the producer publishes and
    /// rings at a varying moment; the consumer must always wake up.
    func testDoorbellNeverLosesAWakeUp() {
        let bell = Doorbell()
        assertNoLostWakeUp(bell, seed: 5, registered: true) { hasWork in bell.sleep(unless: hasWork) }
    }

    /// The same for an owner that sleeps in the poller, as Monitor does: the ring
    /// goes through `waker` (the poller's eventfd) and only while the owner has
    /// announced its sleep; a missed ring would leave it in a 10 s wait.
    func testDoorbellWithAWakerNeverLosesAWakeUp() throws {
        let bell = Doorbell()
        let poller = try EpollPoller()
        bell.waker = { poller.wake() }
        assertNoLostWakeUp(bell, seed: 7, registered: false) { hasWork in
            if !bell.announceSleep(unless: hasWork) {
                do { _ = try poller.wait(timeoutMs: 10_000) } catch { XCTFail("\(error)") }
                poller.forEachReady { _, _ in }
            }
            bell.announceAwake()
        }
    }

    /// Thread 0 consumes rounds, sleeping through `sleep` whenever it has seen
    /// them all; thread 1 publishes each round and rings, and waits up to 5 s for it.
    private func assertNoLostWakeUp(_ bell: Doorbell, seed: UInt64, registered: Bool,
                                    sleep: @escaping (() -> Bool) -> Void) {
        let posted = AtomicInt()
        let acked = AtomicInt()
        let stop = AtomicInt()
        let lostAt = AtomicInt(-1)
        let roundsDone = AtomicInt()
        runThreads(2) { role in
            if role == 0 {
                if registered { gw_rcu_register_thread() }
                defer { if registered { gw_rcu_unregister_thread() } }
                var r = 0
                while stop.load() == 0 {
                    let p = posted.load()
                    if p > r {
                        r = p
                        acked.store(r)
                        continue
                    }
                    sleep { posted.load() > r || stop.load() != 0 }
                }
            } else {
                var random = TestRandom(seed: seed)
                let budget = Date().addingTimeInterval(2)  // bounds the work, not the verdict
                var round = 0
                while round < 20_000 && Date() < budget {
                    round += 1
                    let delay = random.below(4)
                    if delay == 1 { for _ in 0..<random.below(300) { gw_cpu_relax() } }
                    if delay == 2 { sched_yield() }
                    posted.store(round)
                    bell.ring()
                    if !spinUntil(seconds: 5, { acked.load() == round }) {
                        lostAt.store(round)
                        break
                    }
                }
                roundsDone.store(round)
                stop.store(1)
                bell.ring()
            }
        }
        XCTAssertEqual(lostAt.load(), -1, "the sleeper missed a ring")
        XCTAssertGreaterThan(roundsDone.load(), 100)
    }
}
