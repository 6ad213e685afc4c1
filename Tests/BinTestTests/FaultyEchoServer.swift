import Foundation
import Glibc
import GatewayCore
import TestSupport

/// A small blocking echo server on 127.0.0.1 (ephemeral port), one thread per
/// connection, that can break the echo in one chosen way on its first connection.
/// It exists to prove that the client sees each kind of broken server.
final class FaultyEchoServer: @unchecked Sendable {
    enum Fault: Sendable {
        case none
        /// Flip body byte `byte` of the reply to the request with this seq.
        case corrupt(seq: UInt32, byte: Int)
        /// Never send the reply to this seq.
        case drop(seq: UInt32)
        /// Send the reply to seq + 1 before the reply to seq.
        case swap(seq: UInt32)
        /// Send half of the reply to this seq, then close.
        case closeMidReply(seq: UInt32)
        /// Close on receiving this seq, without replying.
        case close(seq: UInt32)
        /// Reply to this seq, then close.
        case closeAfterReply(seq: UInt32)
        /// Reply with status 7 to this seq.
        case status(seq: UInt32)
        /// Stop replying from this seq on, keeping the connection open.
        case stall(seq: UInt32)
        /// Reply to this seq with a PLEASE_RECONNECT in the same write, then count what the client
        /// still sends until it closes (`bytesAfterNotice`).
        case noticeWithReply(seq: UInt32)
    }

    private let listener: LoopbackListener
    var port: Int { listener.port }
    private let fault: Fault
    // Guards `accepted` and `peers`: connection threads are started from the accept thread.
    private let lock = NSLock()
    private var accepted = 0
    private var peers: [String: Int] = [:]
    private var afterNotice: Int?

    init(fault: Fault = .none) throws {
        self.fault = fault
        listener = try LoopbackListener()
        Thread.detachNewThread { [self] in acceptLoop() }
    }

    /// Stops accepting; connection threads end when their clients close.
    func stop() { listener.stop() }

    var connections: Int { lock.withLock { accepted } }
    /// With `noticeWithReply`: bytes the client sent after the notice, once it has closed.
    var bytesAfterNotice: Int? { lock.withLock { afterNotice } }
    /// Connections accepted, by the client's address.
    var connectionsByPeer: [String: Int] { lock.withLock { peers } }

    private func acceptLoop() {
        while true {
            guard let (fd, address) = listener.accept() else { return }
            let first = lock.withLock {
                accepted += 1
                peers[address, default: 0] += 1
                return accepted == 1
            }
            Thread.detachNewThread { [self] in serve(fd, fault: first ? fault : .none) }
        }
    }

    private func serve(_ fd: Int32, fault: Fault) {
        defer { Glibc.close(fd) }
        var held: [UInt8]?
        while let request = readFrame(fd) {
            var reply = request
            let seq = FrameHeader(decoding: request).seq
            switch fault {
            case .corrupt(seq, let byte):
                reply[FrameHeader.size + byte] ^= 0x5A
            case .drop(seq):
                continue
            case .swap(seq):
                held = reply
                continue
            case .closeMidReply(seq):
                _ = writeAll(fd, Array(reply[..<(reply.count / 2)]))
                return closeGracefully(fd)
            case .close(seq):
                return closeGracefully(fd)
            case .status(seq):
                reply.withUnsafeMutableBytes { $0.storeBytes(of: UInt32(7).bigEndian, toByteOffset: 10, as: UInt32.self) }
            case .stall(let from) where seq >= from:
                continue
            case .noticeWithReply(seq):
                var notice = [UInt8](repeating: 0, count: FrameHeader.size + 4)
                notice.withUnsafeMutableBytes {
                    FrameHeader(length: UInt32($0.count), seq: 0, cmd: ReservedCommand.pleaseReconnect)
                        .encode(into: $0.baseAddress!)
                    $0.storeBytes(of: UInt32(5000).bigEndian, toByteOffset: FrameHeader.size, as: UInt32.self)
                }
                guard writeAll(fd, reply + notice) else { return }
                var sink = [UInt8](repeating: 0, count: 4096)
                var total = 0
                while case let n = sink.withUnsafeMutableBytes({ read(fd, $0.baseAddress!, $0.count) }), n > 0 {
                    total += n
                }
                lock.withLock { afterNotice = total }
                return
            default:
                break
            }
            guard writeAll(fd, reply) else { return }
            if case .closeAfterReply(seq) = fault { return closeGracefully(fd) }
            if let earlier = held {
                held = nil
                guard writeAll(fd, earlier) else { return }
            }
        }
    }

    /// FIN, then read until the client closes: closing with requests unread would send a
    /// reset, which lets the kernel drop replies the client has not read yet.
    private func closeGracefully(_ fd: Int32) {
        shutdown(fd, Int32(SHUT_WR))
        var sink = [UInt8](repeating: 0, count: 4096)
        while sink.withUnsafeMutableBytes({ read(fd, $0.baseAddress!, $0.count) }) > 0 {}
    }

    private func readFrame(_ fd: Int32) -> [UInt8]? {
        var header = [UInt8](repeating: 0, count: FrameHeader.size)
        guard readAll(fd, &header, from: 0) else { return nil }
        let length = Int(FrameHeader.length(at: header))
        guard length >= FrameHeader.size else { return nil }
        var frame = header + [UInt8](repeating: 0, count: length - FrameHeader.size)
        guard readAll(fd, &frame, from: FrameHeader.size) else { return nil }
        return frame
    }

    private func readAll(_ fd: Int32, _ bytes: inout [UInt8], from start: Int) -> Bool {
        var offset = start
        while offset < bytes.count {
            let n = bytes.withUnsafeMutableBytes { read(fd, $0.baseAddress! + offset, $0.count - offset) }
            guard n > 0 else { return false }
            offset += n
        }
        return true
    }

    private func writeAll(_ fd: Int32, _ bytes: [UInt8]) -> Bool {
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { send(fd, $0.baseAddress! + offset, $0.count - offset, Int32(MSG_NOSIGNAL)) }
            guard n > 0 else { return false }
            offset += n
        }
        return true
    }
}
