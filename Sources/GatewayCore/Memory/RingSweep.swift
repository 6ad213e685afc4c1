/// A ring producer's list of connections whose ring kept its storage at the end of a service (the
/// consumer had not taken every entry yet). At the producer's next tick, each ring found empty by
/// then gives its storage back, so a connection that falls idle holds none a tick later, whichever
/// thread ran its last frame. At most one entry per connection (a flag in the slot); owned by the
/// producing stage, i.e. its token holder: Receive for receive rings, Deal for send rings.
final class RingSweep {
    private let ids: UnsafeMutablePointer<UInt64>
    private let capacity: Int
    private(set) var count = 0
    /// Byte offset of the slot's flag (resolved once: a key path would be walked on every call).
    private let flagOffset: Int
    /// The length at which the stage sweeps at the end of a batch instead of waiting for its tick:
    /// twice what the last sweep kept, at least `earliest`. A burst of connections that each echo
    /// once and fall idle then holds about that many rings' storage, not one per connection until
    /// the tick; and each entry is looked at a bounded number of times per `keep`, however busy.
    private var sweepAt = RingSweep.earliest
    static let earliest = 64

    init(capacity: Int, flag: WritableKeyPath<ConnectionSlot, Bool>) {
        self.capacity = capacity
        ids = VirtualMemory.reserve(UInt64.self, count: capacity)
        flagOffset = MemoryLayout<ConnectionSlot>.offset(of: flag)!
    }

    deinit { VirtualMemory.release(ids, count: capacity) }

    @inline(__always)
    private func flag(_ s: UnsafeMutablePointer<ConnectionSlot>) -> UnsafeMutablePointer<Bool> {
        (UnsafeMutableRawPointer(s) + flagOffset).assumingMemoryBound(to: Bool.self)
    }

    /// Gives `ring` (the producer's, of `id`) back if empty, else lists `id` for the next tick.
    /// True when the list went from empty to one: the stage then asks for ticks.
    @inline(__always)
    func detachOrKeep(_ ring: FrameRing, _ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) -> Bool {
        ring.detachIfEmpty() ? false : keep(id, s)
    }

    /// Lists `id` for the next tick unless it is listed already; true as for `detachOrKeep`.
    @inline(__always)
    func keep(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) -> Bool {
        if flag(s).pointee { return false }
        flag(s).pointee = true
        ids[count] = id.packed  // one entry per slot at most: count < capacity
        count += 1
        return count == 1
    }

    /// At the end of a batch: sweeps if the list is `sweepAt` long. True when it swept.
    @inline(__always)
    func sweepIfLong(_ table: ConnectionTable, ring: (UInt32) -> FrameRing) -> Bool {
        guard count >= sweepAt else { return false }
        sweep(table, ring: ring)
        return true
    }

    /// At a tick: each listed ring still held and now empty gives its storage back; a slot reused
    /// since it was listed is dropped (its reset cleared the flag and gave back its storage).
    func sweep(_ table: ConnectionTable, ring: (UInt32) -> FrameRing) {
        var kept = 0
        for i in 0..<count {
            let id = ConnectionID(packed: ids[i])
            let s = table.slot(id.index)
            // Only while open: a closing slot's rings go back when it is reclaimed, and a slot past its
            // grace period may be in liburcu's reclaim right now (it still holds the id until reset).
            guard s.holds(id), s.state == .open else { continue }
            if ring(id.index).detachIfEmpty() {
                flag(s).pointee = false
            } else {
                ids[kept] = ids[i]
                kept += 1
            }
        }
        count = kept
        sweepAt = max(RingSweep.earliest, 2 * kept)
    }
}
