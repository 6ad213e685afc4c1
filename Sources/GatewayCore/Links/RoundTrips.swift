import Atomics

/// Link round-trip times, in nanoseconds, from each heartbeat to its echo: a ring of the latest
/// samples, written by Deal alone and read by the admin side, which takes what is new since its
/// last read. A reader that falls more than `capacity` samples behind loses the oldest, and says so.
public final class RoundTrips: @unchecked Sendable {  // one writer (Deal); readers only load atomics
    public static let capacity = 1024
    private let samples: UnsafeMutablePointer<UInt64.AtomicRepresentation>
    /// Samples written so far; sample n is at n % capacity.
    private let written = UnsafeAtomic<UInt64>.create(0)

    init() {
        samples = .allocate(capacity: Self.capacity)
        samples.initialize(repeating: .init(0), count: Self.capacity)
    }

    deinit {
        samples.deallocate()
        written.destroy()
    }

    private func slot(_ n: UInt64) -> UnsafeAtomic<UInt64> { UnsafeAtomic(at: samples + Int(n % UInt64(Self.capacity))) }

    /// Deal only.
    func record(nanoseconds: UInt64) {
        let n = written.load(ordering: .relaxed)
        slot(n).store(nanoseconds, ordering: .relaxed)
        written.store(n &+ 1, ordering: .releasing)
    }

    /// The samples written after the first `after`, and the count to pass next time; `lost` are
    /// those overwritten before this read could take them.
    public func read(after: UInt64) -> (samples: [UInt64], next: UInt64, lost: UInt64) {
        let end = written.load(ordering: .acquiring)
        let after = min(after, end)
        var start = max(after, end >= UInt64(Self.capacity) ? end - UInt64(Self.capacity) : 0)
        var out: [UInt64] = []
        out.reserveCapacity(Int(end - start))
        for n in start..<end { out.append(slot(n).load(ordering: .relaxed)) }
        // The writer may have lapped the first ones while they were copied.
        let now = written.load(ordering: .acquiring)
        if now > UInt64(Self.capacity), now - UInt64(Self.capacity) > start {
            let overwritten = Int(min(now - UInt64(Self.capacity) - start, UInt64(out.count)))
            out.removeFirst(overwritten)
            start += UInt64(overwritten)
        }
        return (out, end, start - after)
    }
}
