import CLinux
import Glibc

/// Send's: the datagrams packed for UDP sessions during one batch of Send's work, sent with one
/// sendmmsg when the batch is done (`flush`, from SendStage.batchDone) or the staging is full, so
/// that many sessions' replies cost one system call. Datagram bytes are copied here from the send
/// rings (at most `udp_max_datagram` each), so the rings' chunks are released at once.
/// A datagram the socket has no room for is dropped and counted (`sendFull`): UDP promises no more,
/// and Send never waits on a socket that every session shares.
final class UDPSendBatch {
    static let capacity = 64
    let maxPayload: Int
    private let buffers: UnsafeMutableRawPointer
    private let messages: UnsafeMutablePointer<gw_mmsghdr>
    private let iovs: UnsafeMutablePointer<iovec>
    private let names: UnsafeMutablePointer<sockaddr_in6>
    private var count = 0
    private var socket: Int32 = -1
    private let counters: UDPCounters

    init(maxPayload: Int, counters: UDPCounters) {
        self.maxPayload = maxPayload
        self.counters = counters
        buffers = .allocate(byteCount: Self.capacity * maxPayload, alignment: 16)
        messages = .allocate(capacity: Self.capacity)
        messages.initialize(repeating: gw_mmsghdr(), count: Self.capacity)
        iovs = .allocate(capacity: Self.capacity)
        names = .allocate(capacity: Self.capacity)
        for i in 0..<Self.capacity {
            iovs[i] = iovec(iov_base: buffers + i * maxPayload, iov_len: 0)
            messages[i].msg_hdr.msg_iov = iovs + i
            messages[i].msg_hdr.msg_iovlen = 1
            messages[i].msg_hdr.msg_name = UnsafeMutableRawPointer(names + i)
        }
    }

    deinit {
        buffers.deallocate()
        messages.deallocate()
        iovs.deallocate()
        names.deallocate()
    }

    /// Room for the next datagram to `socket` (the staging is sent first when full, or when it holds
    /// datagrams for another socket).
    private func room(_ socket: Int32) -> UnsafeMutableRawPointer {
        if count == Self.capacity || (count > 0 && socket != self.socket) { flush() }
        self.socket = socket
        return buffers + count * maxPayload
    }

    private func commit(_ length: Int, to u: UnsafeMutablePointer<UDPSession>) {
        iovs[count].iov_len = length
        names[count] = u.pointee.address
        messages[count].msg_hdr.msg_namelen = u.pointee.addressLength
        count += 1
    }

    /// Sends what is staged. A datagram refused with EAGAIN or ENOBUFS ends the call: the socket's
    /// buffer is full, and the rest are dropped with it.
    func flush() {
        var sent = 0
        var delivered = 0
        while sent < count {
            let n = gw_sendmmsg(socket, messages + sent, UInt32(count - sent), 0)
            counters.add(.sendCalls)
            if n > 0 {
                sent += Int(n)
                delivered += Int(n)
                continue
            }
            let e = gw_errno()
            if e == EINTR { continue }
            if e == EAGAIN || e == EWOULDBLOCK || e == ENOBUFS {
                counters.add(.sendFull, UInt64(count - sent))
                break
            }
            counters.add(.sendErrors)  // this one (an address the kernel refuses): the rest go on
            sent += 1
        }
        counters.add(.datagramsOut, UInt64(delivered))
        count = 0
    }

    /// The packer's sink for one session's write: datagrams past the session's amplification budget are
    /// withheld (dropped and counted) while its address is unproved.
    struct Sink: DatagramSink {
        let batch: UDPSendBatch
        let session: UnsafeMutablePointer<UDPSession>
        let proven: Bool
        let budget: UInt64

        mutating func room() -> UnsafeMutableRawPointer { batch.room(session.pointee.socket) }

        mutating func emit(_ length: Int) {
            let after = session.pointee.sent &+ UInt64(length)
            if !proven && after > budget {
                batch.counters.add(.withheldDatagrams)
                batch.counters.add(.withheldBytes, UInt64(length))
                // The token alone goes instead, if the budget allows it: a client whose answers are all
                // bigger than three times its requests still learns how to prove its address.
                let tokenOnly = session.pointee.sent &+ UInt64(DatagramSplitter.tokenFrameSize)
                guard tokenOnly <= budget else { return }
                DatagramSplitter.writeTokenFrame(session.pointee.token, into: batch.room(session.pointee.socket))
                session.pointee.sent = tokenOnly
                batch.commit(DatagramSplitter.tokenFrameSize, to: session)
                return
            }
            session.pointee.sent = after
            batch.commit(length, to: session)
        }
    }
}
