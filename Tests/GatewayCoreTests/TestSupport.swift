import Dispatch
import Foundation
import Glibc
import Logging
import Synchronization
import XCTest
@_spi(Benchmarks) @testable import GatewayCore
// TestClient, TestProcess and waitUntil, for every file of this target.
@_exported import TestSupport

/// Like `waitUntil` but yields instead of sleeping, for hand-offs measured in microseconds.
@discardableResult
func spinUntil(seconds: Double = 5, _ condition: () -> Bool) -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    var spins = 0
    while !condition() {
        spins &+= 1
        if spins & 255 == 0 && Date() >= deadline { return condition() }
        sched_yield()
    }
    return true
}

/// Runs `body(i)` for i in 0..<count on that many OS threads and joins them all.
func runThreads(_ count: Int, _ body: @escaping (Int) -> Void) {
    let threads = (0..<count).map { i in OSThread(name: "test-\(i)") { body(i) } }
    for t in threads { t.join() }
}

/// Runs `body` on its own thread; false if it has not returned after `seconds`
/// (the thread is then left behind: a hang guard for calls such as `stop()`).
func finishes(within seconds: Double, _ body: @escaping @Sendable () -> Void) -> Bool {
    let done = DispatchSemaphore(value: 0)
    let thread = OSThread(name: "test-guarded") {
        body()
        done.signal()
    }
    guard done.wait(timeout: .now() + seconds) == .success else { return false }
    thread.join()
    return true
}

/// A value behind an NSLock, shaped as Synchronization.Mutex: ThreadSanitizer sees pthread locking,
/// but not the futex inside the uninstrumented Mutex, and reported races on contended ones.
final class Locked<Value>: @unchecked Sendable {  // `value` is guarded by `lock`
    private let lock = NSLock()
    nonisolated(unsafe) private var value: Value

    init(_ value: Value) { self.value = value }

    func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        try lock.withLock { try body(&value) }
    }
}

/// Log lines the gateway wrote, for checks such as "logged once with the peer address".
final class LogRecorder: Sendable {
    private let lines = Locked<[(Logger.Level, String)]>([])

    var logger: Logger {
        var logger = Logger(label: "gateway-test") { _ in RecordingHandler(recorder: self) }
        logger.logLevel = .info
        return logger
    }

    func record(_ level: Logger.Level, _ message: String) { lines.withLock { $0.append((level, message)) } }

    func messages(atLeast level: Logger.Level) -> [String] {
        lines.withLock { $0.filter { $0.0 >= level }.map(\.1) }
    }

    struct RecordingHandler: LogHandler {
        let recorder: LogRecorder
        var metadata: Logger.Metadata = [:]
        var logLevel: Logger.Level = .info
        subscript(metadataKey key: String) -> Logger.Metadata.Value? {
            get { metadata[key] }
            set { metadata[key] = newValue }
        }
        func log(event: LogEvent) { recorder.record(event.level, event.message.description) }
    }
}

/// A started gateway on an ephemeral port with test-sized defaults.
func startGateway(_ poller: PollerKind, handler: GatewayHandler = EchoHandler(), log: LogRecorder = LogRecorder(),
                  _ configure: (inout GatewayConfig) -> Void = { _ in }) throws -> Gateway {
    var config = GatewayConfig()
    config.port = 0
    config.poller = poller
    config.maxConnections = 64
    config.tickMilliseconds = 50
    configure(&config)
    let gateway = try Gateway(config: config, handler: handler, logger: log.logger)
    try gateway.start()
    return gateway
}

/// Every close of an accepted connection is counted exactly once (after `stop()`).
func assertEveryCloseCounted(_ gateway: Gateway, _ label: String, file: StaticString = #filePath, line: UInt = #line) {
    let s = gateway.stats()
    let closed = CloseCause.allCases.filter { $0 != .overCapacity }.reduce(UInt64(0)) { $0 + s.closes($1) }
    XCTAssertEqual(closed, s.accepted, "\(label): closes by cause \(s.closes) vs accepted \(s.accepted)", file: file, line: line)
    XCTAssertEqual(s.connectionsOpen, 0, "\(label): slots still in use after stop", file: file, line: line)
}

/// A deterministic generator (SplitMix64) so that failures reproduce.
struct TestRandom {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    mutating func below(_ n: Int) -> Int { Int(next() % UInt64(n)) }
}

/// A frame whose uid and body identify `owner`, so a reply on the wrong connection shows.
func ownedFrame(owner: UInt32, seq: UInt32, bodySize: Int, cmd: UInt16 = 1) -> [UInt8] {
    var body = [UInt8](repeating: 0, count: bodySize)
    for i in 0..<bodySize { body[i] = UInt8(truncatingIfNeeded: owner &* 131 &+ seq &* 7 &+ UInt32(i)) }
    return TestClient.frame(seq: seq, cmd: cmd, uid: owner, body: body)
}

/// A sequentially consistent counter that escaping closures and threads can share.
final class AtomicInt: Sendable {
    private let value: Atomic<Int>
    init(_ initial: Int = 0) { value = Atomic(initial) }
    @discardableResult
    func add(_ n: Int = 1) -> Int { value.add(n, ordering: .sequentiallyConsistent).newValue }
    func load() -> Int { value.load(ordering: .sequentiallyConsistent) }
    func store(_ n: Int) { value.store(n, ordering: .sequentiallyConsistent) }
    /// Stores `n` and returns the previous value.
    func exchange(_ n: Int) -> Int { value.exchange(n, ordering: .sequentiallyConsistent) }
}

/// Problems found on helper threads, reported on the test's own thread.
final class Failures: Sendable {
    private let list = Locked<[String]>([])
    func add(_ message: String) { list.withLock { if $0.count < 20 { $0.append(message) } } }
    var all: [String] { list.withLock { $0 } }
    func assertNone(_ label: String, file: StaticString = #filePath, line: UInt = #line) {
        let found = all
        XCTAssertTrue(found.isEmpty, "\(label): \(found.joined(separator: "; "))", file: file, line: line)
    }
}

extension LinkMessage {
    /// The message as bytes; for DATA, the 30-byte overhead only (append the client frame).
    var bytes: [UInt8] {
        var out = [UInt8](repeating: 0, count: encodedLength)
        out.withUnsafeMutableBytes { encode(into: $0.baseAddress!) }
        return out
    }
}
