import Atomics
import Glibc

/// One stage thread's queue of connection ids. Producers append under a
/// spinlock; the consumer swaps the whole batch out in one locked step and
/// works through it without the lock. Both buffers are reserved up front, so
/// posting never allocates. Event gates keep each id in here at most once.
@_spi(Benchmarks) public final class Inbox: @unchecked Sendable {  // buffers are guarded by `lock`; `count` is atomic
    private let lock = SpinLock()
    private let capacity: Int
    private var filling: UnsafeMutablePointer<UInt64>
    private var draining: UnsafeMutablePointer<UInt64>
    private let count = UnsafeAtomic<Int>.create(0)

    public init(capacity: Int) {
        self.capacity = capacity
        filling = VirtualMemory.reserve(UInt64.self, count: capacity)
        draining = VirtualMemory.reserve(UInt64.self, count: capacity)
    }

    deinit {
        count.destroy()
        VirtualMemory.release(filling, count: capacity)
        VirtualMemory.release(draining, count: capacity)
    }

    /// Appends an id; returns true when the inbox was empty (the edge on which to ring).
    @inline(__always)
    public func push(_ id: UInt64) -> Bool {
        lock.lock()
        let n = count.load(ordering: .relaxed)
        precondition(n < capacity, "inbox overflow: gates should make this impossible")
        filling[n] = id
        count.store(n &+ 1, ordering: .releasing)
        lock.unlock()
        return n == 0
    }

    /// A lock-free look, for the consumer's spin and sleep checks.
    @inline(__always)
    public var isEmpty: Bool { count.load(ordering: .sequentiallyConsistent) == 0 }

    /// Ids waiting, as of now.
    var pending: Int { count.load(ordering: .relaxed) }

    /// Takes every id posted so far and hands them to `body` in order.
    @inline(__always)
    public func drain(_ body: (UInt64) -> Void) -> Int {
        if count.load(ordering: .acquiring) == 0 { return 0 }
        lock.lock()
        let n = count.load(ordering: .relaxed)
        swap(&filling, &draining)
        count.store(0, ordering: .releasing)
        lock.unlock()
        for i in 0..<n { body(draining[i]) }
        return n
    }
}
