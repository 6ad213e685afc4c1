/// A hashed timing wheel owned by one thread: add and cancel are O(1), and
/// each tick visits one bucket. Timers are intrusive nodes named by slot index,
/// so a connection's timer costs no allocation.
@_spi(Benchmarks) public struct TimerNode {
    static let none = UInt32.max

    public init() {}

    var next = TimerNode.none
    var prev = TimerNode.none
    /// The list the node is on while armed: a bucket, or the due list.
    var bucket: UInt32 = 0
    var armed = false
    /// Absolute tick at which the timer fires.
    var expiry: UInt64 = 0
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
    /// Heads of the bucket lists, then one more: the timers due in the tick being run.
    private let heads: UnsafeMutablePointer<UInt32>
    private let mask: UInt64
    private let due: UInt32
    /// The last tick processed. A wheel has one owning thread, so the run-time exclusivity checks
    /// (a call into the runtime on every read from another file: 12 instructions a reply, callgrind) go.
    @exclusivity(unchecked) public private(set) var now: UInt64 = 0
    @exclusivity(unchecked) public private(set) var count = 0

    /// - Parameter bucketCount: a power of two; timers further out than this
    ///   many ticks wait whole turns in their bucket.
    public init(nodes: TimerNodes, bucketCount: Int = 1024) {
        precondition(bucketCount > 0 && bucketCount & (bucketCount - 1) == 0)
        self.nodes = nodes
        heads = .allocate(capacity: bucketCount + 1)
        heads.initialize(repeating: TimerNode.none, count: bucketCount + 1)
        mask = UInt64(bucketCount - 1)
        due = UInt32(bucketCount)
    }

    deinit { heads.deallocate() }

    /// Arms timer `i` to fire `delay` ticks from now (at least one), replacing any earlier arming.
    public func schedule(_ i: UInt32, after delay: UInt64) {
        cancel(i)
        let expiry = now &+ max(1, delay)
        nodes[i].pointee.expiry = expiry
        link(i, into: UInt32(expiry & mask))
        count += 1
    }

    public func cancel(_ i: UInt32) {
        guard nodes[i].pointee.armed else { return }
        unlink(i)
        count -= 1
    }

    public func isArmed(_ i: UInt32) -> Bool { nodes[i].pointee.armed }

    /// Advances to `tick`, calling `fire` for every timer that expired on the
    /// way. `fire` may schedule or cancel any timer, the firing one included; a
    /// timer cancelled before its turn to fire does not fire.
    public func advance(to tick: UInt64, fire: (UInt32) -> Void) {
        if count == 0 {
            now = max(now, tick)  // nothing to visit: skip the empty turns
            return
        }
        while now < tick {
            now &+= 1
            // Move the due timers out of the bucket first, so that `fire` may change the bucket freely.
            var i = heads[Int(now & mask)]
            while i != TimerNode.none {
                let next = nodes[i].pointee.next
                if nodes[i].pointee.expiry <= now {
                    unlink(i)
                    link(i, into: due)
                }
                i = next
            }
            while heads[Int(due)] != TimerNode.none {
                let first = heads[Int(due)]
                cancel(first)
                fire(first)
            }
        }
    }

    private func link(_ i: UInt32, into bucket: UInt32) {
        let node = nodes[i]
        node.pointee.bucket = bucket
        node.pointee.armed = true
        node.pointee.prev = TimerNode.none
        node.pointee.next = heads[Int(bucket)]
        if heads[Int(bucket)] != TimerNode.none { nodes[heads[Int(bucket)]].pointee.prev = i }
        heads[Int(bucket)] = i
    }

    private func unlink(_ i: UInt32) {
        let node = nodes[i]
        let (prev, next) = (node.pointee.prev, node.pointee.next)
        if prev != TimerNode.none {
            nodes[prev].pointee.next = next
        } else {
            heads[Int(node.pointee.bucket)] = next
        }
        if next != TimerNode.none { nodes[next].pointee.prev = prev }
        node.pointee.armed = false
    }
}
