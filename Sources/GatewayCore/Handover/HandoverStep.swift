import Atomics

/// A connection's way through a hot restart's hand-over (docs/HANDOVER.md), in its slot's `handover`
/// field. The exporter starts it; then each stage in pipeline order stops touching the connection and
/// passes it on, without stopping for any other connection. Once Send has stopped no thread touches
/// it, and its state (what was read and not dealt, what was produced and not written) can be read whole.
enum HandoverStep: UInt8 {
    case none = 0
    /// Receive's turn: it reads no more.
    case stopReading
    /// Deal's: it deals no more (frames received and not dealt travel as input bytes).
    case stopDealing
    /// Send's: one last write, then it writes no more (what is left travels as output bytes).
    case stopWriting
    /// Every stage has stopped.
    case quiet
}

extension UnsafeMutablePointer where Pointee == ConnectionSlot {
    @inline(__always)
    var handoverStep: HandoverStep {
        HandoverStep(rawValue: atomic(\.handover).load(ordering: .acquiring)) ?? .none
    }

    /// The stage whose turn it is passes the connection on; false when the exporter called the
    /// hand-over off meanwhile (the slot is served as before).
    /// Deal has passed the connection on in a hand-over (until the exporter calls it off): Deal
    /// touches it no more, not even for what comes down for it.
    @inline(__always)
    var passedOnForHandover: Bool {
        atomic(\.handover).load(ordering: .acquiring) >= HandoverStep.stopWriting.rawValue
    }

    func passHandover(from step: HandoverStep) -> Bool {
        atomic(\.handover).compareExchange(expected: step.rawValue, desired: step.rawValue + 1,
                                           ordering: .acquiringAndReleasing).exchanged
    }
}

/// The stages' side: each one's whole hook, called first thing for a client in a hand-over.
extension ReceiveStage {
    /// True while the connection is being handed over: nothing is read.
    @inline(__always)
    func holdsForHandover(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) -> Bool {
        guard s.atomic(\.handover).load(ordering: .acquiring) != 0 else { return false }
        if s.passHandover(from: .stopReading) { engine.deal.input.post(s, id) }
        return true
    }
}

extension DealStage {
    /// True while the connection is being handed over: nothing is dealt. It passes on once its role
    /// has what it owes the client (a forwarding client: the core's answer to MOVING). A hand-over
    /// called off after MOVING went up is the role's to undo.
    @inline(__always)
    func holdsForHandover<Role: ClientRole>(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>,
                                            _ role: Role) -> Bool {
        guard s.atomic(\.handover).load(ordering: .acquiring) != 0 else {
            if s.pointee.deal.moveState != 0 { role.moveCalledOff(id, s) }
            return false
        }
        if s.handoverStep == .stopDealing, role.readyToMove(id, s) { passToSend(id, s) }
        return true
    }

    /// Deal is done with a connection being handed over: Send's turn.
    func passToSend(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) {
        if s.passHandover(from: .stopDealing) { engine.send.input.post(s, id) }
    }
}

extension SendStage {
    /// True while the connection is being handed over: on its turn Send writes what the socket takes,
    /// once, then nothing more.
    @inline(__always)
    func holdsForHandover(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) -> Bool {
        guard s.atomic(\.handover).load(ordering: .acquiring) != 0 else { return false }
        if s.handoverStep == .stopWriting, flush(id, s, table.sendRing(id.index)) {
            _ = s.passHandover(from: .stopWriting)
        }
        return true
    }
}
