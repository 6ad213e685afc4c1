import CLinux
import Glibc

/// A connected AF_UNIX stream socket speaking the hand-over protocol of docs/OPERATIONS.md: short
/// text lines, one of which carries the listening sockets (SCM_RIGHTS).
final class UnixStream {
    let fd: Int32

    init(fd: Int32) { self.fd = fd }

    deinit { close(fd) }

    /// Connects to the socket at `path`.
    static func connect(to path: String) throws(HandoverError) -> UnixStream {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw HandoverError("socket: \(String(cString: strerror(errno)))") }
        let stream = UnixStream(fd: fd)
        var address = try socketAddress(path)
        let rc = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard rc == 0 else {
            let e = errno
            throw HandoverError("connect \(path): \(String(cString: strerror(e)))",
                                nobodyThere: e == ENOENT || e == ECONNREFUSED)
        }
        return stream
    }

    static func socketAddress(_ path: String) throws(HandoverError) -> sockaddr_un {
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        guard !bytes.isEmpty, bytes.count < capacity else {
            throw HandoverError("control socket path '\(path)' must be 1...\(capacity - 1) bytes")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        return address
    }

    /// Bounds every later read and write, so a peer that stops talking cannot hang a restart.
    /// Unbounded, that promise would not hold: a failure is an error, not a warning.
    func setTimeout(seconds: Int) throws(HandoverError) {
        var limit = timeval(tv_sec: seconds, tv_usec: 0)
        for (option, name) in [(SO_RCVTIMEO, "SO_RCVTIMEO"), (SO_SNDTIMEO, "SO_SNDTIMEO")] {
            guard setsockopt(fd, SOL_SOCKET, option, &limit, socklen_t(MemoryLayout<timeval>.size)) == 0 else {
                throw HandoverError("setting \(name): \(String(cString: strerror(errno)))")
            }
        }
    }

    func send(_ message: HandoverLine, descriptors: [Int32] = []) throws(HandoverError) {
        let line = message.text
        let bytes = Array((line + "\n").utf8)
        let sent = descriptors.withUnsafeBufferPointer { fds in
            bytes.withUnsafeBytes { gw_send_fds(fd, fds.baseAddress, Int32(fds.count), $0.baseAddress, $0.count) }
        }
        guard sent == bytes.count else {
            throw HandoverError("sending '\(line)': \(sent < 0 ? String(cString: strerror(errno)) : "short write")")
        }
    }

    /// One line (the protocol's lines are short and sent whole, so one message each), with any
    /// descriptors that came with it; nil at end of stream.
    func receive() throws(HandoverError) -> (line: String, descriptors: [Int32])? {
        var buffer = [UInt8](repeating: 0, count: HandoverLine.maxLength + 1)
        let (n, received) = receiveMessage(into: &buffer)
        guard n > 0 else {
            for d in received { close(d) }
            if n == 0 { return nil }
            throw HandoverError(receiving: errno)
        }
        let text = String(decoding: buffer.prefix(n), as: UTF8.self)
        return (text.hasSuffix("\n") ? String(text.dropLast()) : text, received)
    }

    /// One message into `buffer` with the descriptors that came with it (the caller's to close): its
    /// byte count, 0 at the end of the stream, -1 with errno on an error.
    func receiveMessage(into buffer: inout [UInt8]) -> (count: Int, descriptors: [Int32]) {
        var fds = [Int32](repeating: -1, count: Int(GW_MAX_FDS))
        var count: Int32 = 0
        let n = buffer.withUnsafeMutableBytes { b in
            fds.withUnsafeMutableBufferPointer {
                gw_recv_fds(fd, $0.baseAddress, GW_MAX_FDS, &count, b.baseAddress, b.count)
            }
        }
        return (n, Array(fds.prefix(Int(count))))
    }
}

/// A hot restart that could not go ahead: the old process keeps serving.
struct HandoverError: Error, CustomStringConvertible {
    let description: String
    /// No process listens at the control socket: there is nothing to take over.
    let nobodyThere: Bool

    /// A read or write on the control socket ran past its timeout: the peer is alive but stalls.
    let timedOut: Bool

    init(_ description: String, nobodyThere: Bool = false, timedOut: Bool = false) {
        self.description = description
        self.nobodyThere = nobodyThere
        self.timedOut = timedOut
    }

    /// A failed receive, from its errno.
    init(receiving error: Int32) {
        self.init("receiving: \(String(cString: strerror(error)))", timedOut: error == EAGAIN || error == EWOULDBLOCK)
    }
}
