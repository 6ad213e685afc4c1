import Glibc
import GatewayCore

/// --transport udp (docs/UDP.md): a connected UDP socket per connection; requests go out as datagrams
/// of whole frames, at most `datagramPayload` bytes (the gateway's default udp_max_datagram), and the
/// address token the gateway puts first in its datagrams is echoed first in the next one. Each reply
/// datagram is whole frames, checked as they stream in; a lost datagram shows as a missing reply.
extension ClientWorker {
    var usesUDP: Bool { settings.transport == .udp }

    /// The payload of one datagram: what an unfragmented IPv4 datagram on Ethernet carries.
    static let datagramPayload = 1472

    /// Requests out, one datagram per send, as many whole frames in each as fit (one frame alone when
    /// bigger: the gateway answers it as it can).
    func flushUDP(_ j: Int) {
        while slots[j].hasUnsent && slots[j].writable {
            let slot = slots[j]
            var start = 0
            if slot.udpTokenDue {
                DatagramSplitter.writeTokenFrame(slot.udpToken, into: sendBuffer)
                start = DatagramSplitter.tokenFrameSize
            }
            let room = max(Self.datagramPayload - start, pattern.frameSize)
            var count = pattern.fill(sendBuffer + start, capacity: min(room, Self.bufferSize - start), from: slot.writeSeq,
                                     offset: 0, until: slot.nextSeq, uid: slot.uid)
            count -= count % pattern.frameSize
            let sent = sendBytes(j, sendBuffer, start + count)
            if sent == start + count {
                slots[j].writeSeq &+= UInt32(count / pattern.frameSize)
                slots[j].udpTokenDue = false
                continue
            }
            let error = errno
            if error == EAGAIN || error == EWOULDBLOCK || error == ENOBUFS {
                slots[j].writable = false
            } else if error != EINTR {
                serverClosed(j, .failed(error))
            }
        }
    }

    /// A datagram just read into `receiveBuffer`: a leading token frame is kept to echo and taken out;
    /// returns the frame bytes left.
    func takeUDPToken(_ j: Int, count: Int) -> Int {
        let size = DatagramSplitter.tokenFrameSize
        guard count >= size, case .frames(let start, let token?) =
                DatagramSplitter.split(receiveBuffer, count: size, maxFrame: size) else { return count }
        // The gateway sends it until it has our echo (which a lost datagram may have taken): echo each one.
        slots[j].udpToken = token
        slots[j].udpTokenDue = true
        // With no request to carry it (push mode), it goes alone, so that pushes are not held to 3x.
        if !slots[j].hasUnsent && slots[j].writable {
            var frame = (UInt64(0), UInt64(0), UInt64(0), UInt64(0))
            let sent = withUnsafeMutableBytes(of: &frame) { f -> Int in
                DatagramSplitter.writeTokenFrame(token, into: f.baseAddress!)
                return sendBytes(j, f.baseAddress!, size)
            }
            if sent == size { slots[j].udpTokenDue = false }
        }
        memmove(receiveBuffer, receiveBuffer + start, count - start)
        return count - start
    }
}
