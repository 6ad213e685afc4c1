/// Where the gateway frames (docs/PROTOCOL.md) in a stream of WebSocket payload end: it reads each
/// frame's 4-byte length field, which may be cut anywhere, and skips the rest of the frame.
/// WebSocketReader uses it to hold clients to "a gateway frame may not span messages" (1007); the
/// writer to keep the same promise to clients when a descriptor ends inside a frame (a backlog's
/// blocks cut frames anywhere): that descriptor goes as a fragment, and the message goes on in the next.
/// Zeroed memory is a follower at a frame's end.
struct FrameFollower: Equatable {
    /// The length field's bytes so far, then the bytes of the frame still to come.
    private var lengthField: UInt32 = 0
    private var frameLeft: UInt32 = 0
    private var lengthSeen: UInt8 = 0

    /// No frame is begun and unfinished.
    var atFrameEnd: Bool { frameLeft == 0 && lengthSeen == 0 }

    /// Follows `n` more bytes of the stream at `p`.
    mutating func follow(_ p: UnsafeRawPointer, _ n: Int) {
        var i = 0
        while i < n {
            if frameLeft > 0 {
                let k = min(Int(frameLeft), n - i)
                frameLeft -= UInt32(k)
                i += k
                continue
            }
            lengthField = lengthField << 8 | UInt32(p.load(fromByteOffset: i, as: UInt8.self))
            lengthSeen += 1
            i += 1
            if lengthSeen == 4 {
                // A bad length is the frame cutter's to report; here it only has to end somewhere.
                frameLeft = max(lengthField, 4) - 4
                lengthSeen = 0
                lengthField = 0
            }
        }
    }
}
