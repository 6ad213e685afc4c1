import Glibc

/// Where packed datagrams go: a buffer of `maxPayload` bytes for the next one, then its length.
protocol DatagramSink {
    mutating func room() -> UnsafeMutableRawPointer
    mutating func emit(_ length: Int)
}

/// Send's, per UDP session: cuts the frames of its send ring into datagram payloads of at most
/// `maxPayload` bytes, as many whole frames in each as fit (docs/UDP.md). A frame longer than that is
/// never fragmented: its header goes out alone with status `datagram_too_large` and its bytes are
/// passed over. Until the session has proved its address each datagram begins with its token frame
/// (when the frame after it still fits). The ring's bytes are a stream: a frame may continue from one
/// descriptor into the next, and a write may end inside a frame (`carry` keeps its start).
struct DatagramPacker {
    /// What is kept between writes, per session.
    struct Stream {
        /// A pool chunk of `maxPayload` bytes holding the start of a frame whose rest has not come yet.
        var carry: UnsafeMutableRawPointer?
        var carryHave: UInt32
        /// Bytes of a too-large frame still to pass over.
        var skipLeft: UInt32
    }

    let maxPayload: Int

    /// Packs every byte of the `count` iovecs; returns how many frames were too large for a datagram.
    func pack<Sink: DatagramSink>(_ iov: UnsafePointer<iovec>, count: Int, stream: inout Stream, token: UInt64?,
                                  pool: ChunkPool, into sink: inout Sink) -> Int {
        var cursor = Cursor(iov: iov, count: count)
        var datagram: UnsafeMutableRawPointer?
        var used = 0
        var tooLarge = 0
        var header = (UInt64(0), UInt64(0), UInt16(0))
        func open(_ length: Int) -> UnsafeMutableRawPointer {
            if let d = datagram, used + length <= maxPayload { return d + used }
            if datagram != nil { sink.emit(used) }
            let d = sink.room()
            datagram = d
            used = 0
            if let token, length + DatagramSplitter.tokenFrameSize <= maxPayload {
                DatagramSplitter.writeTokenFrame(token, into: d)
                used = DatagramSplitter.tokenFrameSize
            }
            return d + used
        }
        while true {
            if stream.skipLeft > 0 {
                let n = min(Int(stream.skipLeft), cursor.remaining)
                cursor.skip(n)
                stream.skipLeft -= UInt32(n)
                if stream.skipLeft > 0 { break }
            }
            let have = Int(stream.carryHave) + cursor.remaining
            if have == 0 { break }
            if have < FrameHeader.size {
                keep(&cursor, &stream, pool)
                break
            }
            let length = withUnsafeMutableBytes(of: &header) { h -> Int in
                let fromCarry = min(Int(stream.carryHave), FrameHeader.size)
                if fromCarry > 0 { h.baseAddress!.copyMemory(from: stream.carry!, byteCount: fromCarry) }
                cursor.peek(FrameHeader.size - fromCarry, into: h.baseAddress! + fromCarry)
                return Int(FrameHeader.length(at: h.baseAddress!))
            }
            if length < FrameHeader.size || length > maxPayload {
                // The engine queues only whole frames of 18...max_frame: a short length cannot come, and
                // would only mean the rest of the stream is not frames, so it is passed over too.
                if length >= FrameHeader.size {
                    withUnsafeMutableBytes(of: &header) { h in
                        var answer = FrameHeader(decoding: h.baseAddress!)
                        answer.length = UInt32(FrameHeader.size)
                        answer.status = GatewayStatus.datagramTooLarge
                        answer.encode(into: open(FrameHeader.size))
                    }
                    used += FrameHeader.size
                }
                tooLarge += 1
                let fromStream = length >= FrameHeader.size ? length - Int(stream.carryHave) : cursor.remaining
                dropCarry(&stream, pool)
                stream.skipLeft = UInt32(fromStream)
                continue
            }
            if have < length {
                keep(&cursor, &stream, pool)
                break
            }
            let d = open(length)
            let fromCarry = Int(stream.carryHave)
            if fromCarry > 0 { d.copyMemory(from: stream.carry!, byteCount: fromCarry) }
            cursor.copy(length - fromCarry, into: d + fromCarry)
            dropCarry(&stream, pool)
            used += length
        }
        if datagram != nil { sink.emit(used) }
        return tooLarge
    }

    /// The rest of this write is the start of a frame: kept for the next write.
    private func keep(_ cursor: inout Cursor, _ stream: inout Stream, _ pool: ChunkPool) {
        let carry = stream.carry ?? pool.allocate(capacity: maxPayload).bytes
        stream.carry = carry
        let n = cursor.remaining
        cursor.copy(n, into: carry + Int(stream.carryHave))
        stream.carryHave += UInt32(n)
    }

    func dropCarry(_ stream: inout Stream, _ pool: ChunkPool) {
        if let carry = stream.carry { pool.release(Chunk(carry - Chunk.headerSize)) }
        stream.carry = nil
        stream.carryHave = 0
    }

    /// A read position in a gather list.
    private struct Cursor {
        let iov: UnsafePointer<iovec>
        let count: Int
        var index = 0
        var offset = 0
        private(set) var remaining: Int

        init(iov: UnsafePointer<iovec>, count: Int) {
            self.iov = iov
            self.count = count
            var total = 0
            for i in 0..<count { total += iov[i].iov_len }
            remaining = total
        }

        /// Copies the next `n` bytes to `dst` without moving.
        func peek(_ n: Int, into dst: UnsafeMutableRawPointer) {
            var (i, off, done) = (index, offset, 0)
            while done < n {
                let take = min(n - done, iov[i].iov_len - off)
                if take > 0 { (dst + done).copyMemory(from: iov[i].iov_base! + off, byteCount: take) }
                done += take
                i += 1
                off = 0
            }
        }

        mutating func copy(_ n: Int, into dst: UnsafeMutableRawPointer) {
            peek(n, into: dst)
            skip(n)
        }

        mutating func skip(_ n: Int) {
            remaining -= n
            var left = n
            while left > 0 {
                let take = min(left, iov[index].iov_len - offset)
                left -= take
                offset += take
                if offset == iov[index].iov_len {
                    index += 1
                    offset = 0
                }
            }
        }
    }
}
