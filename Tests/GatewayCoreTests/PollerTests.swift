import CLinux
import Foundation
import Glibc
import XCTest
@_spi(Benchmarks) @testable import GatewayCore

/// Both poller backends through the `Poller` interface, on socket pairs: the same contract
/// (readable once after each resumeReading, writable once after each wantWritable) for both.
final class PollerTests: XCTestCase {
    /// A connected, non-blocking socket pair; closed on deinit.
    final class Pair {
        let a: Int32
        let b: Int32
        init() {
            var fds: [Int32] = [0, 0]
            let rc = socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds)
            precondition(rc == 0)
            a = fds[0]
            b = fds[1]
        }
        deinit {
            close(a)
            close(b)
        }
        func write(toA byte: UInt8 = 1) { var v = byte; _ = Glibc.write(b, &v, 1) }
        func drainA() { var buf = [UInt8](repeating: 0, count: 4096); while Glibc.read(a, &buf, buf.count) > 0 {} }
        /// Fills a's send buffer until it would block.
        func fillA() {
            let chunk = [UInt8](repeating: 0, count: 65536)
            while chunk.withUnsafeBytes({ Glibc.write(a, $0.baseAddress!, $0.count) }) > 0 {}
        }
        func drainB() { var buf = [UInt8](repeating: 0, count: 65536); while Glibc.read(b, &buf, buf.count) > 0 {} }
    }

    /// One wait and the readiness it reports, merged per token.
    private func collect(_ poller: Poller, timeoutMs: Int32) -> [UInt64: PollEvents] {
        var out: [UInt64: PollEvents] = [:]
        XCTAssertNoThrow(try poller.wait(timeoutMs: timeoutMs))
        poller.forEachReady { token, events in out[token, default: []].formUnion(events) }
        return out
    }

    private func pollers() throws -> [(String, Poller)] {
        [("epoll", try EpollPoller()), ("poll", try PollPoller(connections: 1024))]
    }

    /// A report that removes descriptors (Monitor closing a link whose connect failed) must
    /// not break the pass: everything still registered is reported, now or at the next wait.
    func testRemovingDescriptorsWhileReporting() throws {
        for (name, poller) in try pollers() {
            let pairs = (0..<5).map { _ in Pair() }
            for (i, p) in pairs.enumerated() {
                try poller.addConnection(fd: p.a, token: UInt64(i + 1))
                p.write()
            }
            var reported = Set<UInt64>()
            var removed = Set<UInt64>()
            for _ in 0..<3 {
                _ = try poller.wait(timeoutMs: 100)
                poller.forEachReady { token, _ in
                    reported.insert(token)
                    if removed.isEmpty {  // the first report removes two others
                        for other in [UInt64(1), 2, 3].filter({ $0 != token }).prefix(2) {
                            XCTAssertTrue(poller.remove(fd: pairs[Int(other) - 1].a), name)
                            removed.insert(other)
                        }
                    }
                }
            }
            XCTAssertEqual(reported.union(removed), Set((1...5).map(UInt64.init)), name)
            for (i, p) in pairs.enumerated() where !removed.contains(UInt64(i + 1)) { poller.remove(fd: p.a) }
        }
    }

    func testReadableAndWritable() throws {
        for (name, poller) in try pollers() {
            let pair = Pair()
            let token: UInt64 = 0x1234_0000_0042
            try poller.addConnection(fd: pair.a, token: token)
            // Writable once wanted, and once per want.
            poller.wantWritable(token)
            XCTAssertTrue(collect(poller, timeoutMs: 2000)[token]?.contains(.writable) ?? false, name)
            XCTAssertNil(collect(poller, timeoutMs: 50)[token], "\(name): reported once")
            // Readable once the peer writes (reading is wanted from registration), and once only
            // while the bytes are not read: poll is not asked again, epoll sees no new arrival.
            pair.write(toA: 7)
            XCTAssertTrue(collect(poller, timeoutMs: 2000)[token]?.contains(.readable) ?? false, name)
            XCTAssertNil(collect(poller, timeoutMs: 50)[token], "\(name): not reported again before the read")
            // Read dry and resumed: the next arrival is reported.
            pair.drainA()
            poller.resumeReading(token)
            XCTAssertNil(collect(poller, timeoutMs: 50)[token], "\(name): nothing there")
            pair.write(toA: 8)
            XCTAssertTrue(collect(poller, timeoutMs: 2000)[token]?.contains(.readable) ?? false, "\(name): next arrival")
            pair.drainA()
            poller.resumeReading(token)
            // A full send buffer is not writable; draining the peer makes it writable again.
            pair.fillA()
            poller.wantWritable(token)
            XCTAssertFalse(collect(poller, timeoutMs: 50)[token]?.contains(.writable) ?? false, "\(name): full, not writable")
            pair.drainB()
            XCTAssertTrue(collect(poller, timeoutMs: 2000)[token]?.contains(.writable) ?? false, "\(name): drained, writable")
            // A hang-up reads as readable (Receive finds the end of stream), with `hangup`.
            shutdown(pair.b, Int32(SHUT_WR))
            let end = collect(poller, timeoutMs: 2000)[token] ?? []
            XCTAssertTrue(end.isSuperset(of: [.readable, .hangup]), "\(name): end of stream: \(end)")
            poller.remove(fd: pair.a)
        }
    }

    /// poll: a stage's resumeReading reaches a Monitor already waiting (applyInterest wakes it,
    /// once for the batch), for bytes that were there before.
    func testAppliedInterestReachesAWaitInProgress() throws {
        let poller = try PollPoller(connections: 16)
        let pairs = [Pair(), Pair()]
        for (i, p) in pairs.enumerated() {
            try poller.addConnection(fd: p.a, token: UInt64(i))
            p.write(toA: 1)
        }
        XCTAssertEqual(Set(collect(poller, timeoutMs: 2000).keys), [0, 1])
        let box = UncheckedBox(poller)
        let stage = OSThread(name: "test-stage") {
            usleep(50_000)
            box.value.resumeReading(0)
            box.value.resumeReading(1)
            box.value.applyInterest()
        }
        // The wait in progress returns (woken); the next one polls with the new interest.
        let start = Date()
        var reported = Set(collect(poller, timeoutMs: 20_000).keys)
        XCTAssertLessThan(Date().timeIntervalSince(start), 18, "the waiting poll was not woken")
        stage.join()
        reported.formUnion(collect(poller, timeoutMs: 0).keys)
        XCTAssertEqual(reported, [0, 1])
        XCTAssertTrue(collect(poller, timeoutMs: 0).isEmpty, "taken: not reported again")
        for p in pairs { poller.remove(fd: p.a) }
    }

    func testWakeInterruptsWaitAndIsAbsorbed() throws {
        for (name, poller) in try pollers() {
            // Before the wait: it returns at once.
            poller.wake()
            XCTAssertTrue(finishesWait(poller, timeoutMs: 20_000), "\(name): wake before wait")
            XCTAssertTrue(collect(poller, timeoutMs: 0).isEmpty, "\(name): the wake-up is absorbed, not reported")
            // During the wait, from another thread.
            let box = UncheckedBox(poller)
            let waker = OSThread(name: "test-waker") {
                usleep(50_000)
                box.value.wake()
            }
            XCTAssertTrue(finishesWait(poller, timeoutMs: 20_000), "\(name): wake during wait")
            waker.join()
            // Absorbed: a later short wait reports nothing and times out.
            XCTAssertTrue(collect(poller, timeoutMs: 30).isEmpty, name)
        }
    }

    /// Waits (reporting into nothing); false when the wait ran to its full timeout.
    private func finishesWait(_ poller: Poller, timeoutMs: Int32) -> Bool {
        let start = Date()
        var reports = 0
        XCTAssertNoThrow(try poller.wait(timeoutMs: timeoutMs))
        poller.forEachReady { _, _ in reports += 1 }
        XCTAssertEqual(reports, 0, "a wake-up is not a report")
        return Date().timeIntervalSince(start) < Double(timeoutMs) / 1000 * 0.9
    }

    func testRemoveStopsReports() throws {
        for (name, poller) in try pollers() {
            let pairs = (0..<4).map { _ in Pair() }
            for (i, p) in pairs.enumerated() { try poller.addConnection(fd: p.a, token: UInt64(100 + i)) }
            /// Reads every pair dry and resumes reading, as Receive does after a report.
            func readAll() {
                for (i, p) in pairs.enumerated() {
                    p.drainA()
                    poller.resumeReading(UInt64(100 + i))
                }
                _ = collect(poller, timeoutMs: 0)
            }
            for p in pairs { p.write(toA: 1) }
            XCTAssertEqual(Set(collect(poller, timeoutMs: 2000).keys), [100, 101, 102, 103], name)
            readAll()
            // Remove one in the middle (poll moves the last entry into its place), then the one moved.
            poller.remove(fd: pairs[1].a)
            for p in pairs { p.write(toA: 2) }
            XCTAssertEqual(Set(collect(poller, timeoutMs: 2000).keys), [100, 102, 103], "\(name): removed one no longer reported")
            readAll()
            XCTAssertTrue(poller.remove(fd: pairs[3].a), name)
            XCTAssertFalse(poller.remove(fd: pairs[3].a), "\(name): removing twice is reported, and harmless")
            for p in pairs { p.write(toA: 3) }
            XCTAssertEqual(Set(collect(poller, timeoutMs: 2000).keys), [100, 102], name)
            readAll()
            poller.remove(fd: pairs[0].a)
            poller.remove(fd: pairs[2].a)
            for p in pairs { p.write(toA: 4) }
            XCTAssertTrue(collect(poller, timeoutMs: 50).isEmpty, "\(name): all removed")
            // Re-adding a removed descriptor under a new token works; its bytes are wanted at once.
            try poller.addConnection(fd: pairs[1].a, token: 999)
            XCTAssertEqual(Set(collect(poller, timeoutMs: 2000).keys), [999], name)
            poller.remove(fd: pairs[1].a)
        }
    }

    /// A broken epoll instance (its descriptor replaced by one that is not an epoll) makes `wait`
    /// throw, rather than look like "nothing ready" to a caller that would then spin.
    func testBrokenEpollWaitThrows() throws {
        let before = eventpollDescriptors()
        let poller = try EpollPoller()
        let added = eventpollDescriptors().subtracting(before)
        XCTAssertEqual(added.count, 1, "one epoll instance created")
        let devNull = open("/dev/null", O_RDONLY | O_CLOEXEC)
        XCTAssertGreaterThanOrEqual(devNull, 0)
        XCTAssertEqual(dup2(devNull, added.first!), added.first!)
        close(devNull)
        XCTAssertThrowsError(try poller.wait(timeoutMs: 0)) { error in
            XCTAssertEqual(error as? SocketError, SocketError("epoll_wait", EINVAL))
        }
    }

    /// poll reports a registered descriptor closed behind its back (POLLNVAL) as an error on that
    /// connection, so that its owner's read fails and closes it, instead of polling it again at once.
    func testPollReportsADescriptorClosedWhileRegistered() throws {
        let poller = try PollPoller(connections: 16)
        var fds: [Int32] = [0, 0]
        XCTAssertEqual(socketpair(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue), 0, &fds), 0)
        try poller.addConnection(fd: fds[0], token: 5)
        close(fds[0])
        XCTAssertEqual(collect(poller, timeoutMs: 2000)[5], [.readable, .hangup])
        XCTAssertTrue(poller.remove(fd: fds[0]))
        close(fds[1])
    }

    func testListenerIsReportedWhileConnectionsWait() throws {
        for (name, poller) in try pollers() {
            let listener = try Listener(host: "127.0.0.1", port: 0, backlog: 16)
            defer { close(listener.fd) }
            XCTAssertGreaterThan(listener.port, 0)
            try poller.addListener(fd: listener.fd, token: 77)
            XCTAssertNil(collect(poller, timeoutMs: 30)[77], "\(name): nothing pending")
            let client = try TestClient(port: listener.port)
            XCTAssertEqual(collect(poller, timeoutMs: 2000)[77], .readable, name)
            // Level-triggered: reported again until accepted.
            XCTAssertEqual(collect(poller, timeoutMs: 2000)[77], .readable, "\(name): still pending")
            let fd = accept(listener.fd, nil, nil)
            XCTAssertGreaterThanOrEqual(fd, 0)
            close(fd)
            XCTAssertNil(collect(poller, timeoutMs: 30)[77], "\(name): accepted")
            client.close()
            poller.remove(fd: listener.fd)
        }
    }
}

/// This process's descriptors that are epoll instances.
func eventpollDescriptors() -> Set<Int32> {
    let names = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? []
    return Set(names.compactMap { name -> Int32? in
        let target = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/fd/\(name)")
        return target == "anon_inode:[eventpoll]" ? Int32(name) : nil
    })
}

/// Hands a non-Sendable reference to another thread in a test.
final class UncheckedBox<T>: @unchecked Sendable {
    let value: T
    init(_ value: T) { self.value = value }
}
