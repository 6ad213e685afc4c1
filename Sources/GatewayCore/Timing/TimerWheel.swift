/// A hashed timing wheel owned by one thread: add and cancel are O(1), and
/// each tick visits one bucket. Timers are intrusive nodes named by slot index,
/// so a connection's timer costs no allocation.
@_spi(Benchmarks) public struct TimerNode {
    static let none = UInt32.max
    public init() {}

    var next = TimerNode.none
    var prev = TimerNode.none
    /// Absolute tick at which the timer fires.
    var expiry: UInt64 = 0
    var armed = false
}

/// Where the wheel finds node `i`: nodes embedded at a fixed stride in a table.
@_spi(Benchmarks) public struct TimerNodes {
    let base: UnsafeMutableRawPointer
    let stride: Int

    public init(base: UnsafeMutableRawPointer, stride: Int) {
        self.base = base
        self.stride = stride
    }

    @inline(__always)
    subscript(i: UInt32) -> UnsafeMutablePointer<TimerNode> {
        (base + Int(i) * stride).assumingMemoryBound(to: TimerNode.self)
    }
}

@_spi(Benchmarks) public final class TimerWheel {
    private let nodes: TimerNodes
    private let buckets: UnsafeMutablePointer<UInt32>
    private let mask: UInt64
    /// The last tick processed.
    public private(set) var now: UInt64 = 0
    public private(set) var count = 0

    /// - Parameter bucketCount: a power of two; timers further out than this
    ///   many ticks wait whole turns in their bucket.
    public init(nodes: TimerNodes, bucketCount: Int = 1024) {
        precondition(bucketCount > 0 && bucketCount & (bucketCount - 1) == 0)
        self.nodes = nodes
        buckets = .allocate(capacity: bucketCount)
        buckets.initialize(repeating: TimerNode.none, count: bucketCount)
        mask = UInt64(bucketCount - 1)
    }

    deinit { buckets.deallocate() }

    /// Arms timer `i` to fire `delay` ticks from now (at least one), replacing any earlier arming.
    public func schedule(_ i: UInt32, after delay: UInt64) {
        if nodes[i].pointee.armed { cancel(i) }
        let expiry = now &+ max(1, delay)
        let b = Int(expiry & mask)
        let node = nodes[i]
        node.pointee.expiry = expiry
        node.pointee.armed = true
        node.pointee.prev = TimerNode.none
        node.pointee.next = buckets[b]
        if buckets[b] != TimerNode.none { nodes[buckets[b]].pointee.prev = i }
        buckets[b] = i
        count += 1
    }

    public func cancel(_ i: UInt32) {
        let node = nodes[i]
        guard node.pointee.armed else { return }
        let (prev, next) = (node.pointee.prev, node.pointee.next)
        if prev != TimerNode.none {
            nodes[prev].pointee.next = next
        } else {
            buckets[Int(node.pointee.expiry & mask)] = next
        }
        if next != TimerNode.none { nodes[next].pointee.prev = prev }
        node.pointee.armed = false
        count -= 1
    }

    public func isArmed(_ i: UInt32) -> Bool { nodes[i].pointee.armed }

    /// Advances to `tick`, calling `fire` for every timer that expired on the way.
    /// `fire` may schedule or cancel timers, including the one firing.
    public func advance(to tick: UInt64, fire: (UInt32) -> Void) {
        while now < tick {
            now &+= 1
            var i = buckets[Int(now & mask)]
            while i != TimerNode.none {
                let node = nodes[i]
                let next = node.pointee.next
                if node.pointee.expiry <= now {
                    cancel(i)
                    fire(i)
                }
                i = next
            }
        }
    }
}
