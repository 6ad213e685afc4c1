import Atomics

/// A slot's life. Its state changes only here, each transition checking the state it leaves:
///
/// ```
///  free --accepted (Monitor)--------------------------------> open
///  free --beginConnecting (Monitor, links)--> connecting --connected--> open
///                                             connecting --failed: resetForReuse here--> free
///  open --withdrawn (Monitor: the poller refused it, no other thread saw it)--> free
///  open: graceful endings set a cause in `endings` first and keep the slot open:
///        inputEnded (end of stream, stop) --Deal dealt the rest--> flushThenClose
///        flushThenClose (handler or core close) --Send sent the rest--> lingering (shut write side)
///        lingering --client's end of stream or 2 s--> Engine.requestClose
///  open: a hot restart's hand-over quiesces it through `handover` (Handover/HandoverStep.swift):
///        Receive stops reading, Deal dealing, Send writing, each in turn; then
///  open --beginMovingOut (the exporter, once all three stopped)--> movingOut
///        movingOut --movedOut (sent; cause handedOver, no shutdown)--> closing
///        movingOut --cancelMovingOut (not sent)--> open
///  open --beginClosing(cause), from Engine.requestClose: first one wins, closeCause set--> closing
///  closing --detached (Monitor: unregistered, shutdown(2))--> detached
///  detached --beginReclaiming (Deal: handler / core told, counted)--> reclaiming --QSBR grace period,
///        liburcu's thread: rings released, fd closed, resetForReuse--> free (generation + 1)
/// ```
extension UnsafeMutablePointer where Pointee == ConnectionSlot {
    @inline(__always)
    var state: SlotState {
        // Only the transitions below store it, and each stores a valid raw value.
        SlotState(rawValue: stateAtomic.load(ordering: .acquiring)) ?? .free
    }

    @inline(__always)
    private var stateAtomic: UnsafeAtomic<UInt8> { UnsafeAtomic(at: pointer(to: \.state)!) }

    /// A transition only its owning thread makes: the slot must be in `from`. Sequentially consistent,
    /// as `detached` needs (a locked instruction on x86 whatever the ordering).
    private func move(from: SlotState, to: SlotState) {
        let (exchanged, found) = stateAtomic.compareExchange(expected: from.rawValue, desired: to.rawValue,
                                                             ordering: .sequentiallyConsistent)
        precondition(exchanged, "slot \(from) -> \(to) found it \(SlotState(rawValue: found).map { "\($0)" } ?? "?")")
    }

    /// Monitor accepted a connection into this free slot and filled in its fields: publishes them.
    func accepted() { move(from: .free, to: .open) }

    /// Monitor begins an outbound link's connect in this free slot.
    func beginConnecting() { move(from: .free, to: .connecting) }

    /// Monitor learned the link's connect succeeded.
    func connected() { move(from: .connecting, to: .open) }

    /// Monitor could not register a just-accepted socket: back to free, with the same generation,
    /// since no other thread saw the id.
    func withdrawn() { move(from: .open, to: .free) }

    /// The one door to closing (`Engine.requestClose`): true for the first caller, whose cause is
    /// recorded before the slot is handed to Monitor.
    func beginClosing(_ cause: CloseCause) -> Bool {
        guard stateAtomic.compareExchange(expected: SlotState.open.rawValue, desired: SlotState.closing.rawValue,
                                          ordering: .acquiringAndReleasing).exchanged else { return false }
        pointer(to: \.flags.endings)!.recordClose(cause)
        return true
    }

    /// The hand-over's exporter takes a quiet open connection: false when it is no longer open.
    func beginMovingOut() -> Bool {
        stateAtomic.compareExchange(expected: SlotState.open.rawValue, desired: SlotState.movingOut.rawValue,
                                    ordering: .acquiringAndReleasing).exchanged
    }

    /// The connection went to the new process: closing with cause `handedOver`, for Monitor to detach.
    func movedOut() {
        pointer(to: \.flags.endings)!.recordClose(.handedOver)
        move(from: .movingOut, to: .closing)
    }

    /// The hand-over is called off: served here again. False when it was not moving out.
    @discardableResult
    func cancelMovingOut() -> Bool {
        stateAtomic.compareExchange(expected: SlotState.movingOut.rawValue, desired: SlotState.open.rawValue,
                                    ordering: .acquiringAndReleasing).exchanged
    }

    /// Monitor unregistered and shut down the socket; Deal finalizes next.
    func detached() { move(from: .closing, to: .detached) }

    /// Deal begins finalizing a detached slot: false when it is not detached (already finalized).
    func beginReclaiming() -> Bool {
        stateAtomic.compareExchange(expected: SlotState.detached.rawValue, desired: SlotState.reclaiming.rawValue,
                                    ordering: .acquiringAndReleasing).exchanged
    }

    /// How the connection ends: its close causes and the hang-up.
    @inline(__always)
    var endings: UnsafeMutablePointer<SlotEndings> { pointer(to: \.flags.endings)! }

    /// The one reset for reuse, after the rings and the assembly were emptied and the descriptor
    /// closed (reclaiming, or a link whose connect failed): the flags cleared, each part of the slot
    /// back to its fresh value, then a new generation and `free`. Timer nodes stay linked (wheels drop
    /// stale entries by generation) and the RCU head belongs to liburcu.
    func resetForReuse() {
        let from = state
        precondition(from == .reclaiming || from == .connecting, "slot reset while \(from)")
        resetParts()
        generation.wrappingIncrement(ordering: .releasing)
        move(from: from, to: .free)
    }

    /// Every part a connection changes, to the value a never-used slot has (ConnectionTable gives a
    /// slot these on its first use).
    func resetParts() {
        let flags = UnsafeMutableRawPointer(pointer(to: \.flags)!)
        for offset in 0..<MemoryLayout<SlotFlags>.size {
            UnsafeAtomic<UInt8>(at: (flags + offset).assumingMemoryBound(to: UInt8.AtomicRepresentation.self))
                .store(0, ordering: .relaxed)
        }
        sentBytes.store(0, ordering: .relaxed)
        pointee.monitor = MonitorPart()
        pointee.receive = ReceivePart()
        pointee.deal = DealPart()
        pointee.send = SendPart()
    }
}

/// The causes a connection ends with, and its hang-up: one-byte atomics, a cause stored as
/// its raw value + 1 (0 = unset).
struct SlotEndings {
    /// No more input will be dealt (end of stream, shutdown): set once, by `endInput`.
    var inputEnded: UInt8.AtomicRepresentation
    /// Send closes the connection once its send ring is empty (Deal sets it).
    var flushThenClose: UInt8.AtomicRepresentation
    /// A graceful close waits for the client's end of stream, our side shut for writing (Send sets
    /// it); Receive discards what still arrives.
    var lingering: UInt8.AtomicRepresentation
    /// Written by the thread that moved the slot to `closing`.
    var closeCause: UInt8.AtomicRepresentation
    /// The peer hung up or the socket failed (Monitor sets it): Receive reads to the end even after
    /// a short read.
    var hangup: UInt8.AtomicRepresentation
}

extension UnsafeMutablePointer where Pointee == SlotEndings {
    @inline(__always)
    private func atomic(_ field: WritableKeyPath<SlotEndings, UInt8.AtomicRepresentation>) -> UnsafeAtomic<UInt8> {
        UnsafeAtomic(at: pointer(to: field)!)
    }

    @inline(__always)
    private func cause(_ field: WritableKeyPath<SlotEndings, UInt8.AtomicRepresentation>) -> CloseCause? {
        let value = atomic(field).load(ordering: .acquiring)
        return value == 0 ? nil : CloseCause(rawValue: Int(value) - 1)
    }

    /// Sets `field` to `cause` unless a cause is there already: true for the first.
    @inline(__always)
    private func first(_ field: WritableKeyPath<SlotEndings, UInt8.AtomicRepresentation>, _ cause: CloseCause) -> Bool {
        atomic(field).compareExchange(expected: 0, desired: cause.flag,
                                      ordering: .sequentiallyConsistent).exchanged
    }

    var inputEnded: CloseCause? { cause(\.inputEnded) }
    var hasInputEnded: Bool { atomic(\.inputEnded).load(ordering: .sequentiallyConsistent) != 0 }
    /// No more input will be read: true for the first caller, whose cause the close takes.
    func endInput(_ cause: CloseCause) -> Bool { first(\.inputEnded, cause) }

    var flushThenClose: CloseCause? { cause(\.flushThenClose) }
    @inline(__always)
    var isFlushing: Bool { atomic(\.flushThenClose).load(ordering: .sequentiallyConsistent) != 0 }
    /// Close once what is queued is sent: true for the first caller (Deal).
    func closeAfterReplies(_ cause: CloseCause) -> Bool { first(\.flushThenClose, cause) }

    var lingering: CloseCause? { cause(\.lingering) }
    /// Our side is shut for writing; wait for the peer's end: true for the first caller (Send).
    func beginLingering(_ cause: CloseCause) -> Bool { first(\.lingering, cause) }

    var closeCause: CloseCause? { cause(\.closeCause) }
    fileprivate func recordClose(_ cause: CloseCause) {
        atomic(\.closeCause).store(cause.flag, ordering: .releasing)
    }

    @inline(__always)
    var hungUp: Bool { atomic(\.hangup).load(ordering: .acquiring) != 0 }
    func markHangup() { atomic(\.hangup).store(1, ordering: .releasing) }
}

/// A cause kept in a one-byte field: its raw value + 1, 0 meaning unset.
extension CloseCause {
    var flag: UInt8 { UInt8(rawValue + 1) }
}
