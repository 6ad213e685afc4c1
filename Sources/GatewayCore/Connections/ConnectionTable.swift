import Atomics
import Glibc

/// The preallocated table of connection slots. Its memory is reserved once for
/// `capacity` slots (each with its two rings) and pages are touched only as slots
/// are used, so a large `max_connections` costs nothing until connections come.
/// Adding or removing a connection allocates nothing.
@_spi(Benchmarks) public final class ConnectionTable: @unchecked Sendable {  // free list under `lock`; slots follow the ownership rules of ConnectionSlot
    let capacity: Int
    let ringCapacity: Int
    private let stride: Int
    private let ringOffset: Int
    private let base: UnsafeMutableRawPointer

    private let lock = SpinLock()
    private let freeList: UnsafeMutablePointer<UInt32>
    private var freeCount = 0
    /// Slots below this index have been used at least once.
    private(set) var highWater = 0
    private let inUseCount = ManagedAtomic<Int>(0)

    public init(capacity: Int, ringCapacity: Int) {
        self.capacity = capacity
        self.ringCapacity = ringCapacity
        let descriptor = MemoryLayout<FrameDescriptor>.stride
        ringOffset = (MemoryLayout<ConnectionSlot>.stride + 15) & ~15
        stride = (ringOffset + 2 * ringCapacity * descriptor + 63) & ~63
        base = VirtualMemory.reserveBytes(stride * capacity)
        freeList = VirtualMemory.reserve(UInt32.self, count: capacity)
    }

    deinit {
        VirtualMemory.releaseBytes(base, stride * capacity)
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

    func receiveRing(_ i: UInt32) -> FrameRing {
        let s = slot(i)
        let storage = (UnsafeMutableRawPointer(s) + ringOffset).assumingMemoryBound(to: FrameDescriptor.self)
        return FrameRing(indices: s.pointer(to: \.receiveIndices)!, storage: storage, capacity: ringCapacity)
    }

    @inline(__always)
    func sendRing(_ i: UInt32) -> FrameRing {
        let s = slot(i)
        let storage = (UnsafeMutableRawPointer(s) + ringOffset).assumingMemoryBound(to: FrameDescriptor.self) + ringCapacity
        return FrameRing(indices: s.pointer(to: \.sendIndices)!, storage: storage, capacity: ringCapacity)
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
