/// One client connection. Slots live in a worker-owned buffer of structs, so the hot
/// path touches no reference counts. Seqs start at 1 and wrap.
struct ConnectionSlot {
    enum Phase { case unused, connecting, open, finished }

    /// The connection index: the uid of its frames and the "conn N" of its messages.
    let index: Int
    var fd: Int32 = -1
    /// Bumped at every close, and carried in epoll's user data, so that an event still
    /// queued for a closed descriptor is not taken for the slot's next connection.
    var generation: UInt32 = 0
    var phase = Phase.unused
    /// False after EAGAIN until EPOLLOUT (edge-triggered) says there is room again.
    var writable = false
    /// Seq of the next request to issue.
    var nextSeq: UInt32 = 1
    /// First request not yet fully written, and how many of its bytes were.
    var writeSeq: UInt32 = 1
    var writeOffset = 0
    /// Seq the next reply must carry, and how many of its bytes have arrived.
    var expectSeq: UInt32 = 1
    var replyOffset = 0
    /// Requests this connection may still issue (--count), or connect-echo-close cycles in connrate.
    var budget: UInt64
    /// Open loop: requests scheduled for this connection so far.
    var scheduled: UInt64 = 0
    /// When the current connect began (connrate measures connect plus echo).
    var connectStarted: UInt64 = 0
    /// Push mode: the login echo came back; the length of the frame arriving, once its header is in.
    var loggedIn = false
    var frameLength = 0
    /// --transport ws: the upgrade request is sent and its answer is being read (bytes so far, the last four).
    var upgrading = false
    var upgradeBytes = 0
    var upgradeTail: UInt32 = 0
    /// --transport ws, frames bigger than the send buffer: a message of one frame is being written.
    var messageOpen = false
    /// --tls: the connection's OpenSSL object, and whether its handshake is still going (phase connecting).
    var tls: OpaquePointer?
    var handshaking = false
    /// --transport udp: the address token the gateway sent, to be echoed first in the next datagram.
    var udpToken: UInt64 = 0
    var udpTokenDue = false

    init(index: Int, budget: UInt64) {
        self.index = index
        self.budget = budget
    }

    var uid: UInt32 { UInt32(truncatingIfNeeded: index) }
    /// Issued and not yet answered (written or not).
    var outstanding: UInt32 { nextSeq &- expectSeq }
    var hasUnsent: Bool { writeSeq != nextSeq }
}
