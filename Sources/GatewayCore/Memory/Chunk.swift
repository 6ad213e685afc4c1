import Atomics

/// A block of message bytes from the `ChunkPool`, reference counted because a
/// frame read by Receive is released by Send (echo forwards it without a copy).
///
/// Layout: a 32-byte header (refcount, size class, capacity, free-list link)
/// followed by the bytes.
@_spi(Benchmarks) public struct Chunk: Equatable {
    static let headerSize = 32
    public let base: UnsafeMutableRawPointer

    @inline(__always) init(_ base: UnsafeMutableRawPointer) { self.base = base }

    @inline(__always) public var bytes: UnsafeMutableRawPointer { base + Chunk.headerSize }
    @inline(__always) public var capacity: Int { Int(base.load(fromByteOffset: 8, as: UInt32.self)) }
    @inline(__always) var sizeClass: UInt8 { base.load(fromByteOffset: 4, as: UInt8.self) }

    @inline(__always)
    private var refcount: UnsafeAtomic<Int32> {
        UnsafeAtomic(at: base.assumingMemoryBound(to: Int32.AtomicRepresentation.self))
    }

    /// Sets up a fresh header with one reference.
    static func format(_ base: UnsafeMutableRawPointer, sizeClass: UInt8, capacity: Int) -> Chunk {
        base.initializeMemory(as: Int32.AtomicRepresentation.self, repeating: .init(1), count: 1)
        base.storeBytes(of: sizeClass, toByteOffset: 4, as: UInt8.self)
        base.storeBytes(of: UInt32(capacity), toByteOffset: 8, as: UInt32.self)
        return Chunk(base)
    }

    @inline(__always)
    func retain() {
        refcount.wrappingIncrement(ordering: .relaxed)
    }

    /// Drops one reference; true when it was the last and the chunk may be recycled.
    @inline(__always)
    func releaseIsLast() -> Bool {
        refcount.loadThenWrappingDecrement(ordering: .acquiringAndReleasing) == 1
    }

    @inline(__always)
    func resetRefcount() {
        refcount.store(1, ordering: .relaxed)
    }

    /// The free-list link, used only while the chunk sits in the pool.
    var next: UnsafeMutableRawPointer? {
        get { base.load(fromByteOffset: 16, as: UnsafeMutableRawPointer?.self) }
        nonmutating set { base.storeBytes(of: newValue, toByteOffset: 16, as: UnsafeMutableRawPointer?.self) }
    }
}

/// Where a frame (or a run of whole frames) lives: a chunk and a byte range in it.
/// Each descriptor in a ring holds one reference on its chunk.
@_spi(Benchmarks) public struct FrameDescriptor {
    public var chunk: Chunk
    public var offset: UInt32
    public var length: UInt32

    public init(chunk: Chunk, offset: UInt32, length: UInt32) {
        self.chunk = chunk
        self.offset = offset
        self.length = length
    }

    @inline(__always) public var start: UnsafeMutableRawPointer { chunk.bytes + Int(offset) }
}
