import Atomics

/// A fixed-capacity single-producer, single-consumer ring of frame descriptors,
/// laid out in memory the caller provides (inside a connection slot).
/// Receive -> Deal for the receive ring, Deal -> Send for the send ring.
@_spi(Benchmarks) public struct FrameRing {
    /// Producer and consumer positions, free-running; capacity is a power of two.
    public struct Indices {
        var head: UInt32.AtomicRepresentation  // next to pop (consumer)
        var tail: UInt32.AtomicRepresentation  // next to push (producer)
    }

    let indices: UnsafeMutablePointer<Indices>
    let storage: UnsafeMutablePointer<FrameDescriptor>
    let mask: UInt32

    @inline(__always)
    public init(indices: UnsafeMutablePointer<Indices>, storage: UnsafeMutablePointer<FrameDescriptor>, capacity: Int) {
        self.indices = indices
        self.storage = storage
        self.mask = UInt32(capacity - 1)
    }

    @inline(__always) private var head: UnsafeAtomic<UInt32> { UnsafeAtomic(at: indices.pointer(to: \.head)!) }
    @inline(__always) private var tail: UnsafeAtomic<UInt32> { UnsafeAtomic(at: indices.pointer(to: \.tail)!) }

    /// A ring with memory of its own, for tests and benchmarks; free it with `deallocate()`.
    public static func standalone(capacity: Int) -> FrameRing {
        let indices = UnsafeMutablePointer<Indices>.allocate(capacity: 1)
        indices.initialize(to: Indices(head: .init(0), tail: .init(0)))
        return FrameRing(indices: indices, storage: .allocate(capacity: capacity), capacity: capacity)
    }

    public func deallocate() {
        indices.deallocate()
        storage.deallocate()
    }

    /// Sets both positions to zero; only while no thread uses the ring.
    func reset() {
        head.store(0, ordering: .relaxed)
        tail.store(0, ordering: .relaxed)
    }

    // MARK: producer side

    /// Free entries as the producer sees them (it may only grow meanwhile).
    @inline(__always)
    public var freeCount: Int {
        Int(mask &+ 1) - Int(tail.load(ordering: .relaxed) &- head.load(ordering: .acquiring))
    }

    @inline(__always)
    public func push(_ d: FrameDescriptor) -> Bool {
        let t = tail.load(ordering: .relaxed)
        if t &- head.load(ordering: .acquiring) > mask { return false }
        storage[Int(t & mask)] = d
        tail.store(t &+ 1, ordering: .releasing)
        return true
    }

    // MARK: consumer side

    /// Entries ready to pop as the consumer sees them (it may only grow meanwhile).
    @inline(__always)
    public var count: Int { Int(tail.load(ordering: .acquiring) &- head.load(ordering: .relaxed)) }

    /// The i-th entry from the head; `i < count`.
    @inline(__always)
    public func peek(_ i: Int) -> UnsafeMutablePointer<FrameDescriptor> {
        storage + Int((head.load(ordering: .relaxed) &+ UInt32(i)) & mask)
    }

    /// Drops `n` entries from the head (the consumer has taken their references).
    @inline(__always)
    public func pop(_ n: Int) {
        head.store(head.load(ordering: .relaxed) &+ UInt32(n), ordering: .releasing)
    }

    /// Whether the ring is empty, from either side, with a full fence (for pause/resume hand-offs).
    @inline(__always)
    var isEmptySeqCst: Bool {
        tail.load(ordering: .sequentiallyConsistent) == head.load(ordering: .sequentiallyConsistent)
    }
}
