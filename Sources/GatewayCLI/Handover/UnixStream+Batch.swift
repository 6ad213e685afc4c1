import CLinux
import GatewayCore
import Glibc

/// Batches of connections on the control socket, as BatchWire lays them out.
extension UnixStream {
    /// Sends one batch's header with its descriptors (which stay open here too); returns its state,
    /// for `sendState`. Throws if nothing was sent.
    func sendBatchHeader(_ connections: [MovedConnection]) throws(HandoverError) -> [UInt8] {
        var state: [UInt8] = []
        for c in connections { c.encode(into: &state) }
        let header = BatchWire.header(count: connections.count, bytes: state.count)
        let fds = connections.map(\.fd)
        let sent = fds.withUnsafeBufferPointer { f in
            header.withUnsafeBytes { gw_send_fds(fd, f.baseAddress, Int32(f.count), $0.baseAddress, $0.count) }
        }
        guard sent == header.count else {
            let e = errno
            throw HandoverError("sending a batch: \(sent < 0 ? String(cString: strerror(e)) : "short write")",
                                timedOut: sent < 0 && (e == EAGAIN || e == EWOULDBLOCK))
        }
        return state
    }

    /// The batch's state, after its header.
    func sendState(_ state: [UInt8]) throws(HandoverError) { try writeAll(state) }

    /// One batch, its descriptors given to the records; [] at its end marker. Throws on a malformed
    /// batch (its descriptors closed) or a broken stream.
    func receiveBatch() throws(HandoverError) -> [MovedConnection] {
        var header = [UInt8](repeating: 0, count: BatchWire.headerSize)
        let (n, received) = receiveMessage(into: &header)
        func fail(_ why: String) -> HandoverError {
            for d in received { close(d) }
            return HandoverError(why)
        }
        guard n > 0 else {
            throw fail(n == 0 ? "the old process went away" : HandoverError(receiving: errno).description)
        }
        do {
            if n < BatchWire.headerSize { try readAll(&header, from: n) }
        } catch {
            throw fail("\(error)")
        }
        guard let (records, bytes) = BatchWire.parse(header: header), records == received.count else {
            throw fail("a malformed batch header (\(received.count) descriptors)")
        }
        var state = [UInt8](repeating: 0, count: bytes)
        do {
            try readAll(&state, from: 0)
        } catch {
            throw fail("\(error)")
        }
        guard let connections = MovedConnection.decode(state, count: records, fds: received) else {
            throw fail("a malformed batch of \(records) connections")
        }
        return connections
    }

    private func writeAll(_ bytes: [UInt8]) throws(HandoverError) {
        var done = 0
        while done < bytes.count {
            let n = bytes.withUnsafeBytes {
                Glibc.send(fd, $0.baseAddress! + done, $0.count - done, Int32(MSG_NOSIGNAL))
            }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                let e = errno
                throw HandoverError("sending a batch's state: \(String(cString: strerror(e)))",
                                    timedOut: e == EAGAIN || e == EWOULDBLOCK)
            }
            done += n
        }
    }

    private func readAll(_ bytes: inout [UInt8], from start: Int) throws(HandoverError) {
        var done = start
        while done < bytes.count {
            let n = bytes.withUnsafeMutableBytes { Glibc.recv(fd, $0.baseAddress! + done, $0.count - done, 0) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                throw n == 0 ? HandoverError("the stream ended inside a batch") : HandoverError(receiving: errno)
            }
            done += n
        }
    }
}
