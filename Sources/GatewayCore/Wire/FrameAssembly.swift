import Glibc

/// Turns the bytes of successive reads on one connection into frame
/// descriptors, whatever the read boundaries. Whole frames stay in the read
/// block where they landed (one descriptor covers the whole run of them); only
/// a frame cut by a read boundary is copied, into a chunk of its own, so an idle
/// connection holds no read buffer. That chunk grows with the bytes that arrive
/// (doubling, up to the length the header claims), not with the claim: a peer
/// that announces a big frame and trickles it holds at most about four times
/// what it sent (the pool's size classes), and twice beyond 64 KiB.
@_spi(Benchmarks) public struct FrameAssembly {
    /// The frame being assembled (nil while fewer than 4 bytes of it are known).
    private var chunk: Chunk?
    /// Bytes of it held so far.
    private var filled: UInt32 = 0
    /// Its first bytes while the length field itself is incomplete.
    private var lengthBytes: UInt32 = 0

    public init() {}

    public enum Outcome: Equatable {
        /// Bytes of the block from `start` up to `blockEnd` are referenced by emitted
        /// descriptors; bytes past it were copied out and the block may reuse them.
        case ok(blockEnd: Int, frames: Int)
        /// A frame declared this length: the connection must be closed.
        case badLength(UInt32, frames: Int)
    }

    /// True while part of a frame is held.
    public var isPartial: Bool { filled > 0 }

    /// Bytes of chunk memory held for the incomplete frame.
    public var heldBytes: Int { chunk?.capacity ?? 0 }

    /// The smallest chunk an incomplete frame starts in.
    static let firstCapacity = 256

    /// Consumes `count` bytes just read into `block` at `start`. Calls `emit` at
    /// most twice: a frame completed from earlier reads, then the run of whole
    /// frames. Every emitted descriptor carries one reference on its chunk.
    public mutating func consume(block: Chunk, start: Int, count: Int, maxFrame: Int, pool: ChunkPool,
                          emit: (FrameDescriptor) -> Void) -> Outcome {
        var p = block.bytes + start
        var left = count
        var frames = 0
        if filled > 0 {
            let taken: Int
            switch complete(from: p, available: left, maxFrame: maxFrame, pool: pool, emit: emit) {
            case .taken(let n): taken = n
            case .bad(let length): return .badLength(length, frames: 0)
            }
            p += taken
            left -= taken
            if filled > 0 { return .ok(blockEnd: start, frames: 0) }  // still incomplete: every byte was copied out
            frames = 1
        }
        let runStart = start + (count - left)
        switch FrameCutter.scan(p, left, maxFrame: maxFrame) {
        case .badLength(let length, let offset, let n):
            if n > 0 {
                block.retain()
                emit(FrameDescriptor(chunk: block, offset: UInt32(runStart), length: UInt32(offset)))
            }
            return .badLength(length, frames: frames + n)
        case .frames(let consumed, let n):
            if n > 0 {
                block.retain()
                emit(FrameDescriptor(chunk: block, offset: UInt32(runStart), length: UInt32(consumed)))
                frames += n
            }
            if consumed < left {
                switch complete(from: p + consumed, available: left - consumed, maxFrame: maxFrame, pool: pool, emit: emit) {
                case .taken: break  // a partial frame never completes here: scan stopped at it
                case .bad(let length): return .badLength(length, frames: frames)
                }
            }
            return .ok(blockEnd: runStart + consumed, frames: frames)
        }
    }

    /// Drops a partly assembled frame (the connection is going away).
    public mutating func discard(pool: ChunkPool) {
        if let chunk { pool.release(chunk) }
        self = FrameAssembly()
    }

    private enum Step { case taken(Int), bad(UInt32) }

    /// Adds bytes to the frame being assembled (starting one if none is), emitting it when whole.
    private mutating func complete(from p: UnsafeMutableRawPointer, available: Int, maxFrame: Int, pool: ChunkPool,
                                   emit: (FrameDescriptor) -> Void) -> Step {
        var taken = 0
        if chunk == nil {
            // Gather the 4-byte length field first; it sizes the chunk.
            while filled < 4 && taken < available {
                lengthBytes = lengthBytes << 8 | UInt32(p.load(fromByteOffset: taken, as: UInt8.self))
                filled += 1
                taken += 1
            }
            guard filled == 4 else { return .taken(taken) }
            guard FrameCutter.isValid(lengthBytes, maxFrame: maxFrame) else { return .bad(lengthBytes) }
            let c = pool.allocate(capacity: min(Int(lengthBytes), max(Self.firstCapacity, 4 + available - taken)))
            c.bytes.storeBytes(of: lengthBytes.bigEndian, as: UInt32.self)
            chunk = c
        }
        var c = chunk!
        let length = Int(c.bytes.loadUnaligned(as: UInt32.self).bigEndian)
        let n = min(length - Int(filled), available - taken)
        if Int(filled) + n > c.capacity {
            // Grow by doubling (at least to what arrived), never past the frame's length.
            let grown = pool.allocate(capacity: min(length, max(2 * c.capacity, Int(filled) + n)))
            grown.bytes.copyMemory(from: c.bytes, byteCount: Int(filled))
            pool.release(c)
            c = grown
            chunk = grown
        }
        (c.bytes + Int(filled)).copyMemory(from: p + taken, byteCount: n)
        filled += UInt32(n)
        taken += n
        if Int(filled) == length {
            emit(FrameDescriptor(chunk: c, offset: 0, length: UInt32(length)))
            self = FrameAssembly()
        }
        return .taken(taken)
    }
}

extension FrameAssembly {
    /// Appends the bytes of the frame half received (a hot restart carries them over).
    func copyPartial(into out: inout [UInt8]) {
        if let chunk {
            out.append(contentsOf: UnsafeRawBufferPointer(start: chunk.bytes, count: Int(filled)))
        } else {
            for j in 0..<Int(filled) { out.append(UInt8(truncatingIfNeeded: lengthBytes >> (8 * (Int(filled) - 1 - j)))) }
        }
    }
}
