/// A handler's handle on one connection. Valid on the Deal stage only (inside
/// handler callbacks); a handle whose connection has closed does nothing.
public struct Connection {
    public let id: ConnectionID
    /// Deal, unretained (it lives as long as the gateway).
    private let dealRef: Unmanaged<DealStage>
    var deal: DealStage { dealRef.takeUnretainedValue() }

    init(id: ConnectionID, deal: DealStage) {
        self.id = id
        dealRef = .passUnretained(deal)
    }

    /// Bytes that may still be queued for this connection before `max_queued_bytes` (a send past
    /// it closes the connection as a slow consumer): a handler sending on its own schedule (a
    /// core pushing from `tick`) checks it and waits for a later tick.
    public var sendRoom: Int {
        let s = deal.table.slot(id.index)
        return max(0, deal.queueBound(s) - s.outstandingBytes)
    }

    /// Sends `frame` back unchanged, without copying it.
    @inline(__always)
    public func forward(_ frame: Frame) {
        // Through the unretained reference as it is: a strong copy of Deal cost a retain and a
        // release per echoed frame (perf/RESULTS.md, instructions per reply).
        dealRef._withUnsafeGuaranteedRef { $0.enqueue(frame.descriptor, to: id) }
    }

    /// Sends a new frame; `header.length` is computed from the body.
    public func send(_ header: FrameHeader, body: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)) {
        deal.compose(header, body: body, to: id)
    }

    /// Replies to `frame` with the same seq, cmd and uid.
    public func reply(to frame: Frame, status: UInt32 = 0, body: UnsafeRawBufferPointer = UnsafeRawBufferPointer(start: nil, count: 0)) {
        send(FrameHeader(length: 0, seq: frame.header.seq, cmd: frame.header.cmd, status: status, uid: frame.header.uid), body: body)
    }

    /// Closes the connection once the replies already produced have been sent;
    /// frames that arrive after this are not delivered.
    public func close() {
        deal.closeAfterReplies(id)
    }
}
