/// A connection's identity: its slot index and the slot's generation at the
/// time. A slot's generation changes when it is reused, so an id that outlived
/// its connection is recognised and dropped.
public struct ConnectionID: Hashable, Sendable, CustomStringConvertible {
    public let index: UInt32
    public let generation: UInt32

    @inline(__always)
    public init(index: UInt32, generation: UInt32) {
        self.index = index
        self.generation = generation
    }

    @inline(__always)
    init(packed: UInt64) {
        index = UInt32(truncatingIfNeeded: packed)
        generation = UInt32(truncatingIfNeeded: packed >> 32)
    }

    /// The form carried in inboxes and poller tokens.
    @inline(__always)
    var packed: UInt64 { UInt64(generation) << 32 | UInt64(index) }

    public var description: String { "\(index).\(generation)" }
}
