/// Descriptor storage for the connections' rings. A slot holds only its rings' positions; a ring's
/// producer takes storage on its first push and gives it back once the ring is empty, and a
/// reclaimed slot gives back what it still held, so an idle connection holds none (a ring of 32
/// descriptors is 512 bytes). Reserved up front for two rings per slot, so `take` cannot run
/// out; pages are touched as storage is first used. Any thread may take and put (Receive, Deal,
/// Monitor adopting a connection, liburcu's thread reclaiming): a free list under a spinlock.
final class RingPool: @unchecked Sendable {  // the free list and high-water mark under `lock`
    let ringCapacity: Int
    private let ringBytes: Int
    private let rings: Int
    private let base: UnsafeMutableRawPointer
    private let lock = SpinLock()
    private let freeList: UnsafeMutablePointer<UInt32>
    private var freeCount = 0
    /// Storage below this index has been handed out at least once.
    private var highWater = 0
    private var taken = 0

    init(rings: Int, ringCapacity: Int) {
        self.rings = rings
        self.ringCapacity = ringCapacity
        ringBytes = ringCapacity * MemoryLayout<FrameDescriptor>.stride
        base = VirtualMemory.reserveBytes(ringBytes * rings)
        freeList = VirtualMemory.reserve(UInt32.self, count: rings)
    }

    deinit {
        VirtualMemory.releaseBytes(base, ringBytes * rings)
        VirtualMemory.release(freeList, count: rings)
    }

    /// Rings holding storage now.
    var inUse: Int { lock.withLock { taken } }

    /// Bytes of storage ever touched (the pool's share of the resident set).
    var touchedBytes: Int { lock.withLock { highWater } * ringBytes }

    func take() -> UnsafeMutablePointer<FrameDescriptor> {
        lock.lock()
        let index: Int
        if freeCount > 0 {
            freeCount -= 1
            index = Int(freeList[freeCount])
        } else {
            // Two rings per slot, each holding at most one: more would be a ring taking twice.
            precondition(highWater < rings, "ring pool: more than \(rings) rings took storage")
            index = highWater
            highWater += 1
        }
        taken += 1
        lock.unlock()
        return (base + index &* ringBytes).assumingMemoryBound(to: FrameDescriptor.self)
    }

    func put(_ storage: UnsafeMutablePointer<FrameDescriptor>) {
        let index = (UnsafeMutableRawPointer(storage) - base) / ringBytes
        lock.lock()
        freeList[freeCount] = UInt32(index)
        freeCount += 1
        taken -= 1
        lock.unlock()
    }
}
