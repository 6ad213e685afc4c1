import Atomics

/// A fixed-capacity single-producer, single-consumer ring of frame descriptors. Its positions
/// live in the connection slot; its descriptor storage is taken from a `RingPool` by the
/// producer on its first push and given back by the producer once the consumer has taken every
/// entry (`detachIfEmpty`), so an idle connection holds none.
/// Receive -> Deal for the receive ring, Deal -> Send for the send ring.
@_spi(Benchmarks) public struct FrameRing {
    /// Producer and consumer positions, free-running; capacity is a power of two. `storage` is
    /// the descriptor storage's address, 0 while the ring holds none: written by the producer
    /// only, published to the consumer by its release store of `tail`.
    public struct Indices {
        var head: UInt32.AtomicRepresentation  // next to pop (consumer)
        var tail: UInt32.AtomicRepresentation  // next to push (producer)
        var storage: UInt.AtomicRepresentation

        public init(head: UInt32.AtomicRepresentation, tail: UInt32.AtomicRepresentation) {
            self.head = head
            self.tail = tail
            storage = .init(0)
        }
    }

    let indices: UnsafeMutablePointer<Indices>
    let mask: UInt32
    /// Where storage comes from and goes back to (a `RingPool`, unretained: the table owns it);
    /// nil for a ring with storage of its own. Not an `unowned(unsafe) RingPool?`: with that field
    /// the unoptimized build read `Optional<FrameRing>.none` back as a value, so iterating an array
    /// of rings never ended (Engine.reclaim looped at Gateway.stop).
    private let poolAddress: UnsafeMutableRawPointer?

    /// A ring whose storage comes from `pool` when first needed.
    @inline(__always)
    init(indices: UnsafeMutablePointer<Indices>, pool: RingPool) {
        self.indices = indices
        self.mask = UInt32(pool.ringCapacity - 1)
        self.poolAddress = Unmanaged.passUnretained(pool).toOpaque()
    }

    /// A ring over storage the caller owns for the ring's whole life.
    public init(indices: UnsafeMutablePointer<Indices>, storage: UnsafeMutablePointer<FrameDescriptor>, capacity: Int) {
        self.indices = indices
        self.mask = UInt32(capacity - 1)
        self.poolAddress = nil
        UnsafeAtomic<UInt>(at: indices.pointer(to: \.storage)!).store(UInt(bitPattern: storage), ordering: .releasing)
    }

    /// Runs `body` on the pool, if any, through the unretained reference as it is (a strong copy
    /// would cost a retain and a release at every take and put).
    @inline(__always) private func withPool<R>(_ body: (RingPool) -> R) -> R? {
        guard let poolAddress else { return nil }
        return Unmanaged<RingPool>.fromOpaque(poolAddress)._withUnsafeGuaranteedRef(body)
    }
    @inline(__always) private var head: UnsafeAtomic<UInt32> { UnsafeAtomic(at: indices.pointer(to: \.head)!) }
    @inline(__always) private var tail: UnsafeAtomic<UInt32> { UnsafeAtomic(at: indices.pointer(to: \.tail)!) }
    @inline(__always) private var storageWord: UnsafeAtomic<UInt> { UnsafeAtomic(at: indices.pointer(to: \.storage)!) }

    /// A ring with memory of its own, for tests and benchmarks; free it with `deallocate()`.
    public static func standalone(capacity: Int) -> FrameRing {
        let indices = UnsafeMutablePointer<Indices>.allocate(capacity: 1)
        indices.initialize(to: Indices(head: .init(0), tail: .init(0)))
        return FrameRing(indices: indices, storage: .allocate(capacity: capacity), capacity: capacity)
    }

    public func deallocate() {
        UnsafeMutablePointer<FrameDescriptor>(bitPattern: storageWord.load(ordering: .relaxed))?.deallocate()
        indices.deallocate()
    }

    /// Whether the ring holds descriptor storage now (one from the pool, or its own).
    var holdsStorage: Bool { storageWord.load(ordering: .relaxed) != 0 }

    /// Sets both positions to zero and gives pooled storage back; only while no thread uses the ring.
    func reset() {
        head.store(0, ordering: .relaxed)
        tail.store(0, ordering: .relaxed)
        guard poolAddress != nil, let storage = UnsafeMutablePointer<FrameDescriptor>(
            bitPattern: storageWord.load(ordering: .relaxed)) else { return }
        storageWord.store(0, ordering: .relaxed)
        withPool { $0.put(storage) }
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
        let word = storageWord.load(ordering: .relaxed)
        let storage = word != 0 ? UnsafeMutablePointer<FrameDescriptor>(bitPattern: word).unsafelyUnwrapped : attach()
        storage[Int(t & mask)] = d
        tail.store(t &+ 1, ordering: .releasing)
        return true
    }

    /// The first push since the ring was last empty: storage from the pool.
    @inline(never)
    private func attach() -> UnsafeMutablePointer<FrameDescriptor> {
        let storage = withPool { $0.take() }.unsafelyUnwrapped
        storageWord.store(UInt(bitPattern: storage), ordering: .relaxed)
        return storage
    }

    /// Gives the storage back once the consumer has taken every entry: its release store of
    /// `head` came after its last read of an entry, and it reads none until a later push, which
    /// takes storage again and publishes it with `tail`. Producer only. True when the ring holds
    /// no pooled storage afterwards.
    @inline(__always) @discardableResult
    func detachIfEmpty() -> Bool {
        let word = storageWord.load(ordering: .relaxed)
        guard word != 0 else { return true }
        guard poolAddress != nil, tail.load(ordering: .relaxed) == head.load(ordering: .acquiring) else { return false }
        storageWord.store(0, ordering: .relaxed)
        withPool { $0.put(UnsafeMutablePointer<FrameDescriptor>(bitPattern: word).unsafelyUnwrapped) }
        return true
    }

    // MARK: consumer side

    /// Entries ready to pop as the consumer sees them (it may only grow meanwhile).
    @inline(__always)
    public var count: Int { Int(tail.load(ordering: .acquiring) &- head.load(ordering: .relaxed)) }

    /// The i-th entry from the head; `i < count`. The storage is read anew: it may have been
    /// given back and another taken since the consumer last found the ring empty.
    @inline(__always)
    public func peek(_ i: Int) -> UnsafeMutablePointer<FrameDescriptor> {
        let storage = UnsafeMutablePointer<FrameDescriptor>(bitPattern: storageWord.load(ordering: .relaxed))
        return storage.unsafelyUnwrapped + Int((head.load(ordering: .relaxed) &+ UInt32(i)) & mask)
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
