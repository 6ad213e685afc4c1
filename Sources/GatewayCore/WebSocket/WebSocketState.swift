/// One WebSocket connection's state, in two tables beside the connection table (by slot index),
/// reserved with mmap so only the entries of connections that were WebSocket ever cost memory.
/// Receive's part and Send's part live apart, so that neither thread's writes touch the record the
/// other writes without the lock. Zeroed memory is a fresh state.
struct WebSocketInput {
    // Receive's.
    /// The frame reader (its zero value reads a client's frames).
    var reader: WebSocketReader
    /// During the handshake its bytes; after it, client frames that came with the request, still to read.
    var held: Chunk?
    var heldStart: UInt16
    var heldEnd: UInt16
    /// The last read did not fill the buffer: the socket is drained until its next event.
    var shortRead: Bool
    /// A close came (or a rule was broken) after frame bytes that were returned first: close with this
    /// cause + 1 at the next read.
    var pendingEnd: UInt8
    /// wss://: the TLS handshake is done, the upgrade request comes next.
    var tlsDone: Bool
}

/// Send's part, and what Receive shares with it, always under the slot's transport lock.
struct WebSocketOutput {
    /// A control frame to send (a pong), made by Receive, written by Send at a frame boundary.
    var control: Chunk?
    /// The data frame in progress: its header's unsent bytes, and its payload still to send.
    var header: (UInt64, UInt16)
    var frameLeft: UInt32
    var headerLength: UInt8
    var headerSent: UInt8
    var controlLength: UInt8
    var controlSent: UInt8
    /// A close frame went out: nothing may follow it.
    var closeSent: Bool
    /// wss://: OpenSSL holds a record of the bytes offered last that it could not write yet; the next
    /// write must offer the same bytes first, so no control frame may be put in front of them (or
    /// replaced) unless it was offered in that place (`controlOffered`).
    var recordHeld: Bool
    var controlOffered: Bool
    /// The gateway frames in the data frames whose headers have gone out: a message stays open (its
    /// last data frame had no FIN) while one of them is unfinished.
    var frames: FrameFollower

    /// The stream is between frames: a close or control frame may be written now.
    var atBoundary: Bool { headerSent == headerLength && frameLeft == 0 && controlSent == 0 }
}
