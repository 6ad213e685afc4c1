/// One WebSocket connection's state, in a table beside the connection table (by slot index),
/// reserved with mmap so only the entries of connections that were WebSocket ever cost memory.
/// Zeroed memory is a fresh state.
struct WebSocketState {
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

    // Send's: the data frame in progress, its header's unsent bytes and its payload still to send.
    var header: (UInt64, UInt16)
    var headerLength: UInt8
    var headerSent: UInt8
    var frameLeft: UInt32

    // Shared under the slot's transport lock: a control frame to send (a pong), made by Receive,
    // written by Send at a frame boundary; a close frame went out and nothing may follow it.
    var control: Chunk?
    var controlLength: UInt8
    var controlSent: UInt8
    var closeSent: Bool

    /// The stream is between frames: a close or control frame may be written now.
    var atBoundary: Bool { headerSent == headerLength && frameLeft == 0 && controlSent == 0 }
}
