import Glibc
import GatewayCore

/// The request stream of a connection is a pure function of (seq, uid): frames are
/// regenerated into a scratch buffer for every write instead of being stored, and
/// replies are checked against the same function as their bytes stream in.
struct FramePattern {
    static let cmd: UInt16 = 1

    let bodySize: Int
    let frameSize: Int
    /// ramp[k] = UInt8(k & 255) for k < bodySize + 256, so the body of any seq is one
    /// contiguous slice of it: byte i = UInt8(truncatingIfNeeded: seq &* 31 &+ i).
    private let ramp: UnsafeMutablePointer<UInt8>

    init(bodySize: Int) {
        self.bodySize = bodySize
        frameSize = FrameHeader.size + bodySize
        ramp = .allocate(capacity: bodySize + 256)
        for k in 0..<(bodySize + 256) { ramp[k] = UInt8(truncatingIfNeeded: k) }
    }

    func deallocate() { ramp.deallocate() }

    /// The expected body of the frame with this seq.
    @inline(__always)
    func body(seq: UInt32) -> UnsafePointer<UInt8> {
        UnsafePointer(ramp + Int(UInt8(truncatingIfNeeded: seq &* 31)))
    }

    static func bodyByte(seq: UInt32, index: Int) -> UInt8 {
        UInt8(truncatingIfNeeded: seq &* 31 &+ UInt32(truncatingIfNeeded: index))
    }

    func header(seq: UInt32, uid: UInt32) -> FrameHeader {
        FrameHeader(length: UInt32(frameSize), seq: seq, cmd: Self.cmd, status: 0, uid: uid)
    }

    /// Writes the request stream from `offset` bytes into frame `seq` up to (not
    /// including) frame `end`, at most `capacity` bytes. Returns the bytes written.
    func fill(_ destination: UnsafeMutableRawPointer, capacity: Int,
              from seq: UInt32, offset: Int, until end: UInt32, uid: UInt32) -> Int {
        var written = 0
        var seq = seq
        var offset = offset
        while seq != end && written < capacity {
            let room = capacity - written
            if offset < FrameHeader.size {
                if offset == 0 && room >= FrameHeader.size {
                    header(seq: seq, uid: uid).encode(into: destination + written)
                    written += FrameHeader.size
                    offset = FrameHeader.size
                } else {
                    // A header split by the end of the buffer or by an earlier partial send.
                    let count = min(FrameHeader.size - offset, room)
                    withUnsafeTemporaryAllocation(byteCount: FrameHeader.size, alignment: 1) { whole in
                        header(seq: seq, uid: uid).encode(into: whole.baseAddress!)
                        memcpy(destination + written, whole.baseAddress! + offset, count)
                    }
                    written += count
                    offset += count
                }
            } else {
                let count = min(frameSize - offset, room)
                memcpy(destination + written, body(seq: seq) + (offset - FrameHeader.size), count)
                written += count
                offset += count
            }
            if offset == frameSize {
                seq &+= 1
                offset = 0
            }
        }
        return written
    }
}
