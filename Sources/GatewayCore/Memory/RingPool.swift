import Glibc

/// Descriptor storage for the connections' rings. A slot holds only its rings' positions; a ring's
/// producer takes storage on its first push and gives it back once the ring is empty, and a
/// reclaimed slot gives back what it still held, so an idle connection holds none (a ring of 32
/// descriptors is 512 bytes). Reserved up front for two rings per slot, so `take` cannot run
/// out; pages are touched as storage is first used. Any thread may take and put (Receive, Deal,
/// Monitor adopting a connection, liburcu's thread reclaiming): a free list under a spinlock.
/// `trim` gives pages whose storage is all free back to the kernel, so a burst's storage does
/// not stay resident once its connections fall idle.
final class RingPool: @unchecked Sendable {  // everything below `lock` is under it
    let ringCapacity: Int
    private let ringBytes: Int
    private let rings: Int
    private let base: UnsafeMutableRawPointer
    /// What `trim` gives back at once: a page, or one ring's storage if that is larger.
    private let spanBytes: Int
    private let ringsPerSpan: Int
    private let lock = SpinLock()
    private var freeList: UnsafeMutablePointer<UInt32>
    private var freeCount = 0
    /// Storage below this index has been handed out at least once.
    private var highWater = 0
    private var taken = 0
    /// Per span: 1 once storage in it was taken since it was last given back (it may be resident).
    private let spanTouched: UnsafeMutablePointer<UInt8>
    /// Scratch for `trim`: free rings per span, and the free list being rebuilt.
    private let freePerSpan: UnsafeMutablePointer<UInt32>
    private var spareList: UnsafeMutablePointer<UInt32>
    /// Storage put back since the last trim: `trim` looks only once there is enough to matter.
    private var putsSinceTrim = 0
    static let trimAfterPuts = 256

    init(rings: Int, ringCapacity: Int) {
        self.rings = rings
        self.ringCapacity = ringCapacity
        ringBytes = ringCapacity * MemoryLayout<FrameDescriptor>.stride
        // Both powers of two times 16 bytes: one divides the other.
        spanBytes = max(Int(sysconf(Int32(_SC_PAGESIZE))), ringBytes)
        ringsPerSpan = spanBytes / ringBytes
        base = VirtualMemory.reserveBytes(ringBytes * rings)
        freeList = VirtualMemory.reserve(UInt32.self, count: rings)
        spareList = VirtualMemory.reserve(UInt32.self, count: rings)
        let spanCount = (rings + ringsPerSpan - 1) / ringsPerSpan
        spanTouched = VirtualMemory.reserve(UInt8.self, count: spanCount)
        freePerSpan = VirtualMemory.reserve(UInt32.self, count: spanCount)
    }

    deinit {
        VirtualMemory.releaseBytes(base, ringBytes * rings)
        VirtualMemory.release(freeList, count: rings)
        VirtualMemory.release(spareList, count: rings)
        VirtualMemory.release(spanTouched, count: spans(rings))
        VirtualMemory.release(freePerSpan, count: spans(rings))
    }

    private func spans(_ ringCount: Int) -> Int { (ringCount + ringsPerSpan - 1) / ringsPerSpan }

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
        spanTouched[index / ringsPerSpan] = 1
        lock.unlock()
        return (base + index &* ringBytes).assumingMemoryBound(to: FrameDescriptor.self)
    }

    func put(_ storage: UnsafeMutablePointer<FrameDescriptor>) {
        let index = (UnsafeMutableRawPointer(storage) - base) / ringBytes
        lock.lock()
        freeList[freeCount] = UInt32(index)
        freeCount += 1
        taken -= 1
        putsSinceTrim &+= 1
        lock.unlock()
    }

    /// Gives every page whose storage is all free, and was touched since it was last given back, to
    /// the kernel (MADV_DONTNEED: a later take finds it zeroed, which storage may be). The free list
    /// keeps the storage but lists it below the rest, so storage still resident is taken first.
    /// Under the lock throughout, so nothing of a page being given back is taken meanwhile: it walks
    /// the free list once, so it is called at most once a second (Receive's ticks) and looks only
    /// when `trimAfterPuts` puts came since it last looked. Returns the bytes given back.
    @discardableResult
    func trim(force: Bool = false) -> Int {
        lock.lock()
        defer { lock.unlock() }
        guard force || putsSinceTrim >= Self.trimAfterPuts else { return 0 }
        putsSinceTrim = 0
        let used = spans(highWater)
        for i in 0..<used { freePerSpan[i] = 0 }
        for k in 0..<freeCount { freePerSpan[Int(freeList[k]) / ringsPerSpan] &+= 1 }
        // A span past the high-water mark in part: its never-used rings count as free.
        let last = highWater % ringsPerSpan
        if last != 0 { freePerSpan[used - 1] &+= UInt32(ringsPerSpan - last) }
        var given = 0
        for i in 0..<used where spanTouched[i] == 1 && freePerSpan[i] == UInt32(ringsPerSpan) {
            madvise(base + i &* spanBytes, spanBytes, MADV_DONTNEED)
            spanTouched[i] = 0
            given += spanBytes
        }
        // Spans not resident at the bottom of the list, the others on top (taken first).
        var n = 0
        for pass in 0..<2 {
            for k in 0..<freeCount {
                let index = freeList[k]
                if (spanTouched[Int(index) / ringsPerSpan] == 1) == (pass == 1) {
                    spareList[n] = index
                    n += 1
                }
            }
        }
        swap(&freeList, &spareList)
        return given
    }
}
