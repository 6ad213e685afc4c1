import Atomics
import CLinux
import Glibc

/// Recycles message-byte chunks by size class so that steady-state traffic
/// allocates nothing. Frames larger than the biggest class get a chunk of their
/// own from malloc, returned to malloc when released.
@_spi(Benchmarks) public final class ChunkPool: @unchecked Sendable {  // every free list is guarded by its own lock
    /// Capacities of the size classes, smallest first; a read block is the largest.
    public static let classCapacities = [256, 1 << 10, 4 << 10, 16 << 10, 64 << 10]
    public static let blockCapacity = 64 << 10
    private static let hugeClass: UInt8 = 0xFF

    private struct FreeList {
        var head: UnsafeMutableRawPointer?
        var count = 0
        /// The fewest free chunks since the last `trim`: that many were not needed meanwhile.
        var low = 0
    }

    private let locks = ChunkPool.classCapacities.map { _ in SpinLock() }
    /// One free list per class, in plain memory: a Swift array here would share
    /// its copy-on-write check between classes guarded by different locks.
    private let lists: UnsafeMutablePointer<FreeList>
    /// How many free chunks each class keeps before handing memory back to malloc.
    private let keepPerClass: [Int]
    /// Bytes of chunks handed out and not yet recycled: what rings, assemblies and
    /// blocks hold (max_buffered_bytes). Changed per chunk, never per frame.
    private let inUse = UnsafeAtomic<Int>.create(0)
    public var bytesInUse: Int { inUse.load(ordering: .relaxed) }

    /// - Parameter retainedBytes: the most memory each class keeps for reuse.
    public init(retainedBytes: Int = 64 << 20) {
        keepPerClass = ChunkPool.classCapacities.map { max(16, retainedBytes / $0) }
        lists = .allocate(capacity: ChunkPool.classCapacities.count)
        lists.initialize(repeating: FreeList(), count: ChunkPool.classCapacities.count)
    }

    deinit {
        for i in ChunkPool.classCapacities.indices {
            var p = lists[i].head
            while let c = p { p = Chunk(c).next; free(c) }
        }
        lists.deallocate()
        inUse.destroy()
    }

    /// A chunk with room for at least `capacity` bytes and one reference.
    public func allocate(capacity: Int) -> Chunk {
        guard let k = ChunkPool.classCapacities.firstIndex(where: { $0 >= capacity }) else {
            inUse.wrappingIncrement(by: capacity, ordering: .relaxed)
            return Chunk.format(mallocOrDie(Chunk.headerSize + capacity), sizeClass: ChunkPool.hugeClass, capacity: capacity)
        }
        inUse.wrappingIncrement(by: ChunkPool.classCapacities[k], ordering: .relaxed)
        locks[k].lock()
        if let head = lists[k].head {
            let chunk = Chunk(head)
            lists[k].head = chunk.next
            lists[k].count -= 1
            lists[k].low = min(lists[k].low, lists[k].count)
            locks[k].unlock()
            chunk.resetRefcount()
            return chunk
        }
        locks[k].unlock()
        let cap = ChunkPool.classCapacities[k]
        return Chunk.format(mallocOrDie(Chunk.headerSize + cap), sizeClass: UInt8(k), capacity: cap)
    }

    /// Drops one reference and recycles the chunk when it was the last.
    @inline(__always)
    public func release(_ chunk: Chunk) {
        if chunk.releaseIsLast() { recycle(chunk) }
    }

    private func recycle(_ chunk: Chunk) {
        inUse.wrappingDecrement(by: chunk.capacity, ordering: .relaxed)
        let k = Int(chunk.sizeClass)
        guard k < ChunkPool.classCapacities.count else { free(chunk.base); return }
        locks[k].lock()
        if lists[k].count < keepPerClass[k] {
            chunk.next = lists[k].head
            lists[k].head = chunk.base
            lists[k].count += 1
            locks[k].unlock()
        } else {
            locks[k].unlock()
            free(chunk.base)
        }
    }

    /// Free chunks that no allocation needed since the last trim, past `floor` a class, go back to
    /// malloc, and malloc's free pages to the kernel (`malloc_trim`): the read blocks a burst of
    /// connections touched do not stay resident once they fall idle, while steady traffic, which keeps
    /// taking its chunks, keeps them. Called once a second (Receive's ticks, beside `RingPool.trim`).
    /// Returns the bytes freed.
    @discardableResult
    public func trim(floor: Int = 2) -> Int {
        var freed = 0
        for k in ChunkPool.classCapacities.indices {
            var spare: UnsafeMutableRawPointer?
            locks[k].lock()
            var n = min(lists[k].low, lists[k].count - floor)
            while n > 0, let head = lists[k].head {
                lists[k].head = Chunk(head).next
                lists[k].count -= 1
                Chunk(head).next = spare
                spare = head
                n -= 1
                freed += ChunkPool.classCapacities[k]
            }
            lists[k].low = lists[k].count
            locks[k].unlock()
            while let c = spare {
                spare = Chunk(c).next
                free(c)
            }
        }
        if freed > 0 { _ = gw_malloc_trim() }
        return freed
    }

    private func mallocOrDie(_ bytes: Int) -> UnsafeMutableRawPointer {
        guard let p = malloc(bytes) else { fatalError("out of memory allocating a \(bytes)-byte chunk") }
        return p
    }
}
