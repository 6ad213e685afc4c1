/// Replies, called by handlers through Connection and by the roles: queued on the client's send
/// ring, a run of replies that follow one another in memory as one descriptor.
extension DealStage {
    /// Queues a reply that lives in `d` (taking a new reference on its chunk).
    @inline(__always)
    func enqueue(_ d: FrameDescriptor, to id: ConnectionID) {
        // The echo's case first: the next reply of the connection being dealt, right after the
        // pending one in memory, grows it. Its slot holds it (it is reclaimed only on this thread),
        // and `pending` passed the checks below when it began.
        if id == current, var p = pending, p.chunk == d.chunk, p.offset &+ p.length == d.offset {
            p.length &+= d.length
            pending = p
            repliesQueued &+= 1
            return
        }
        enqueueSeparately(d, to: id)
    }

    /// Queues a reply that does not extend the pending one.
    private func enqueueSeparately(_ d: FrameDescriptor, to id: ConnectionID) {
        let s = table.slot(id.index)
        // A handle may outlive its connection (e.g. used from `closed`): its sends go nowhere.
        guard s.holds(id), s.state == .open else { return }
        repliesQueued &+= 1
        d.chunk.retain()
        if id == current {
            flushPending()
            pending = d
            return
        }
        push(d, id, s)
        // Posted, not run here: a link's batch feeds many clients, and Send writing them on its
        // own core beats Deal writing them in turn (perf/RESULTS.md, (h)).
        engine.send.input.post(s, id)
    }

    /// Writes a new frame into the reply block and queues it.
    func compose(_ header: FrameHeader, body: UnsafeRawBufferPointer, to id: ConnectionID) {
        let length = FrameHeader.size + body.count
        var h = header
        h.length = UInt32(length)
        let (chunk, offset) = reserve(length)
        h.encode(into: chunk.bytes + offset)
        if let source = body.baseAddress, body.count > 0 {
            (chunk.bytes + offset + FrameHeader.size).copyMemory(from: source, byteCount: body.count)
        }
        enqueue(FrameDescriptor(chunk: chunk, offset: UInt32(offset), length: UInt32(length)), to: id)
        if chunk != outBlock { pool.release(chunk) }  // a frame too big for the block got a chunk of its own
    }

    /// Asks for `id` to be closed once the replies already queued are sent.
    func closeAfterReplies(_ id: ConnectionID) {
        let s = table.slot(id.index)
        guard s.holds(id), s.state == .open else { return }
        if id == current { flushPending() }  // on the ring before the flag: Send finishes only after it
        closeAfterReplies(id, s, cause: .handler)
    }

    /// `length` bytes in the reply block (a chunk of their own past a block's size), to write into.
    func reserve(_ length: Int) -> (Chunk, Int) {
        if length > ChunkPool.blockCapacity { return (pool.allocate(capacity: length), 0) }
        if let block = outBlock, block.capacity - outUsed >= length {
            defer { outUsed += length }
            return (block, outUsed)
        }
        if let block = outBlock { pool.release(block) }
        let fresh = pool.allocate(capacity: ChunkPool.blockCapacity)
        outBlock = fresh
        outUsed = length
        return (fresh, 0)
    }

    func flushPending() {
        guard let d = pending else { return }
        pending = nil
        push(d, current, table.slot(current.index))
        pushedToCurrent = true
    }

    /// A reply or forwarded frame past max_queued_bytes closes the client as a slow consumer.
    func push(_ d: FrameDescriptor, _ id: ConnectionID, _ s: UnsafeMutablePointer<ConnectionSlot>) {
        if !queueOutput(d, id, s) {
            engine.counters.add(.queueOverflowCloses)
            engine.requestClose(id, cause: .slowConsumer)
        }
    }
}
