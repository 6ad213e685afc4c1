import Atomics
import Glibc

/// The preallocated table of connection slots. Its memory is reserved once for
/// `capacity` slots and pages are touched only as slots are used, so a large
/// `max_connections` costs nothing until connections come. A slot holds its rings'
/// positions; their storage comes from `rings` while in use.
/// Adding or removing a connection allocates nothing.
@_spi(Benchmarks) public final class ConnectionTable: @unchecked Sendable {  // free list under `lock`; slots follow the ownership rules of ConnectionSlot
    let capacity: Int
    let ringCapacity: Int
    let rings: RingPool
    private let stride: Int
    private let base: UnsafeMutableRawPointer
    /// Deal's cold parts, one per slot (`cold`); pages touched only as forwarding, sessions or flood
    /// limits use them.
    private let coldParts: UnsafeMutablePointer<DealColdPart>

    private let lock = SpinLock()
    private let freeList: UnsafeMutablePointer<UInt32>
    private var freeCount = 0
    /// Slots below this index have been used at least once.
    private(set) var highWater = 0
    private let inUseCount = ManagedAtomic<Int>(0)

    public init(capacity: Int, ringCapacity: Int) {
        self.capacity = capacity
        self.ringCapacity = ringCapacity
        rings = RingPool(rings: 2 * capacity, ringCapacity: ringCapacity)
        // Whole cache lines: no two slots share one.
        stride = (MemoryLayout<ConnectionSlot>.stride + 63) & ~63
        base = VirtualMemory.reserveBytes(stride * capacity)
        coldParts = VirtualMemory.reserve(DealColdPart.self, count: capacity)
        freeList = VirtualMemory.reserve(UInt32.self, count: capacity)
    }

    deinit {
        VirtualMemory.releaseBytes(base, stride * capacity)
        VirtualMemory.release(coldParts, count: capacity)
        VirtualMemory.release(freeList, count: capacity)
    }

    /// Bytes of table memory each slot touches once used.
    var bytesPerSlot: Int { stride }

    /// Connections holding a slot, including those closing.
    var inUse: Int { inUseCount.load(ordering: .relaxed) }

    @inline(__always)
    func slot(_ i: UInt32) -> UnsafeMutablePointer<ConnectionSlot> {
        (base + Int(i) &* stride).assumingMemoryBound(to: ConnectionSlot.self)
    }

    /// The index of a slot of this table.
    @inline(__always)
    func index(of s: UnsafeMutablePointer<ConnectionSlot>) -> UInt32 {
        UInt32((UnsafeMutableRawPointer(s) - base) / stride)
    }

    /// Deal's cold part of slot `s` (Deal's thread only), made fresh on the connection's first use of it:
    /// a reclaimed slot's `coldReady` is false, so reuse never writes to the side table.
    @inline(__always)
    func cold(_ s: UnsafeMutablePointer<ConnectionSlot>) -> UnsafeMutablePointer<DealColdPart> {
        let c = coldParts + Int(s.pointee.index)
        if !s.pointee.deal.coldReady {
            c.pointee = DealColdPart()
            s.pointee.deal.coldReady = true
        }
        return c
    }

    @inline(__always)
    func receiveRing(_ i: UInt32) -> FrameRing {
        FrameRing(indices: slot(i).pointer(to: \.receiveIndices)!, pool: rings)
    }

    @inline(__always)
    func sendRing(_ i: UInt32) -> FrameRing {
        FrameRing(indices: slot(i).pointer(to: \.sendIndices)!, pool: rings)
    }

    /// Timer nodes of every slot for one wheel, e.g. `\.receiveTimer`.
    func timerNodes(_ field: KeyPath<ConnectionSlot, TimerNode>) -> TimerNodes {
        TimerNodes(base: base + MemoryLayout<ConnectionSlot>.offset(of: field)!, stride: stride)
    }

    /// A free slot index (its previous user fully reclaimed), or nil when all are in use.
    func allocate() -> UInt32? {
        lock.lock()
        defer { lock.unlock() }
        let index: UInt32
        if freeCount > 0 {
            freeCount -= 1
            index = freeList[freeCount]
        } else if highWater < capacity {
            index = UInt32(highWater)
            // What a reclaimed slot is reset to; before `usedRange` (under the lock) shows it to sweeps.
            slot(index).resetParts()
            slot(index).pointee.index = index
            highWater += 1
        } else {
            return nil
        }
        inUseCount.wrappingIncrement(ordering: .relaxed)
        return index
    }

    /// Returns a slot once no thread can still hold a reference to its last connection.
    func release(_ index: UInt32) {
        lock.withLock {
            freeList[freeCount] = index
            freeCount += 1
        }
        inUseCount.wrappingDecrement(ordering: .relaxed)
    }

    /// Slot indices ever used, for sweeps at shutdown.
    var usedRange: Range<UInt32> { 0..<UInt32(lock.withLock { highWater }) }
}
