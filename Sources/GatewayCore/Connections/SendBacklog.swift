/// What waits for a connection's socket beyond its send ring (Deal's, per slot).
///
/// The send ring holds `ring_capacity` descriptors, each a share of a chunk without a copy.
/// A burst (10,000 pushes, a core's replies to 2,000 pipelined requests) needs more entries
/// than that, and a full ring must not be a fault nor pause the link the burst came on. So
/// once the ring is full, output is copied here: the bytes of consecutive frames packed into
/// a chain of pool blocks, which go on the ring one block per descriptor as Send makes room.
/// Frames are bytes on the socket, so a frame may continue from one block into the next.
/// The copy is paid only by a connection whose ring is full; an empty backlog holds no block.
///
/// Invariants: every block but the tail is full; `head` holds one reference owned here (the
/// tail, while also on the ring, one more); bytes before `headStart` are already on the ring.
struct SendBacklog {
    private var head: UnsafeMutableRawPointer?
    private var tail: UnsafeMutableRawPointer?
    private var headStart: UInt32
    private var tailUsed: UInt32
    /// Bytes here, not yet on the ring.
    private(set) var bytes: Int

    static var empty: SendBacklog { SendBacklog(head: nil, tail: nil, headStart: 0, tailUsed: 0, bytes: 0) }

    var isEmpty: Bool { bytes == 0 }

    /// Copies `count` bytes at `source` after what is already here.
    mutating func append(_ source: UnsafeRawPointer, count: Int, pool: ChunkPool) {
        var copied = 0
        while copied < count {
            if tail == nil || Int(tailUsed) == Chunk(tail!).capacity {
                let fresh = pool.allocate(capacity: ChunkPool.blockCapacity)
                fresh.next = nil
                if let tail { Chunk(tail).next = fresh.base } else { head = fresh.base }
                tail = fresh.base
                tailUsed = 0
                if head == fresh.base { headStart = 0 }
            }
            let block = Chunk(tail!)
            let n = min(count - copied, block.capacity - Int(tailUsed))
            (block.bytes + Int(tailUsed)).copyMemory(from: source + copied, byteCount: n)
            tailUsed += UInt32(n)
            copied += n
        }
        bytes += count
    }

    /// Moves blocks onto `ring` while it has room, oldest first; true when the backlog is empty.
    mutating func drain(into ring: FrameRing, pool: ChunkPool) -> Bool {
        while let block = head.map(Chunk.init), bytes > 0, ring.freeCount > 0 {
            let isTail = head == tail
            let end = isTail ? tailUsed : UInt32(block.capacity)
            let d = FrameDescriptor(chunk: block, offset: headStart, length: end - headStart)
            bytes -= Int(d.length)
            if isTail {
                block.retain()  // this side goes on appending after what the ring now holds
                headStart = end
            } else {
                head = block.next  // read before the push: Send may recycle the block at once
                headStart = 0
            }
            let pushed = ring.push(d)
            precondition(pushed, "send ring lost the room just checked")
        }
        if bytes == 0 { release(pool: pool) }
        return bytes == 0
    }

    /// Gives back every block (the connection is being reclaimed, or the backlog is drained).
    mutating func release(pool: ChunkPool) {
        var next = head
        while let base = next {
            let block = Chunk(base)
            next = base == tail ? nil : block.next
            pool.release(block)
        }
        self = .empty
    }
}

extension SendBacklog {
    /// Appends the bytes held here, oldest first (a hot restart carries them over).
    func copyBytes(into out: inout [UInt8]) {
        var next = head
        var start = Int(headStart)
        while let base = next, bytes > 0 {
            let block = Chunk(base)
            let end = base == tail ? Int(tailUsed) : block.capacity
            out.append(contentsOf: UnsafeRawBufferPointer(start: block.bytes + start, count: end - start))
            start = 0
            next = base == tail ? nil : block.next
        }
    }
}
