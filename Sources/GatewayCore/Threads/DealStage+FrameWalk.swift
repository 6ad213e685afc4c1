/// The one walk over a receive ring, for clients' frames and links' messages alike: frame by frame
/// from where dealing stopped (`DealPart.dealOffset`), each descriptor released once all of it is dealt.
extension DealStage {
    /// What dealing one frame decided.
    enum FrameStep {
        /// Dealt: on to the next frame.
        case next
        /// Stop here: dealing resumes at `offset` of the current descriptor (its output is full).
        case pause(at: Int)
        /// The rest of this descriptor is dropped unread (a client closing after its replies).
        case skipRest
        /// Stop and leave the ring as it is: the connection is closing.
        case abandon
    }

    /// How a walk ended, and the frames it dealt.
    enum WalkEnd { case drained, paused, abandoned }

    /// Walks `id`'s receive ring: `frame` gets each frame's descriptor (a share of the chunk it is in),
    /// its offset in the ring's descriptor and that descriptor, and decides; `descriptorEnd`, after
    /// the last frame of a descriptor, may still pause (output gathered over the descriptor could
    /// not go out). Dealt bytes count for the inline budget.
    @inline(__always)
    func walkFrames(_ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>,
                    frame: (FrameDescriptor, Int, FrameDescriptor) -> FrameStep,
                    descriptorEnd: (FrameDescriptor, Int) -> FrameStep = { _, _ in .next }) -> (WalkEnd, Int) {
        let ring = table.receiveRing(id.index)
        var dealt = 0
        while ring.count > 0 {
            let d = ring.peek(0).pointee
            var offset = Int(s.pointee.deal.dealOffset)
            var step = FrameStep.next
            while offset < Int(d.length) {
                let length = Int(FrameHeader.length(at: d.start + offset))
                let f = FrameDescriptor(chunk: d.chunk, offset: d.offset + UInt32(offset), length: UInt32(length))
                step = frame(f, offset, d)
                guard case .next = step else { break }
                offset += length
                bytesMoved &+= length
                dealt += 1
            }
            if case .next = step { step = descriptorEnd(d, offset) }
            switch step {
            case .next, .skipRest: break
            case .pause(let at):
                s.pointee.deal.dealOffset = UInt32(at)
                return (.paused, dealt)
            case .abandon:
                return (.abandoned, dealt)
            }
            s.pointee.deal.dealOffset = 0
            ring.pop(1)
            pool.release(d.chunk)
        }
        return (.drained, dealt)
    }
}
