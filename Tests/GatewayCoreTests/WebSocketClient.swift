import Glibc
@testable import GatewayCore

/// A raw WebSocket client over TestClient for end-to-end tests: it writes exactly the bytes a
/// test wants (masked or not, fragmented, broken) and decodes the gateway's frames with the
/// client side of WebSocketReader.
final class WebSocketClient {
    let tcp: TestClient
    private var reader = WebSocketReader(fromClient: false)
    /// Frame bytes decoded from binary messages, not yet taken.
    private var frames: [UInt8] = []
    private(set) var pongs: [[UInt8]] = []
    /// The close frame's code, once one came (1005: none in it).
    private(set) var closeCode: UInt16?

    static let key = "dGhlIHNhbXBsZSBub25jZQ=="

    static func request(path: String, origin: String? = nil) -> [UInt8] {
        var lines = ["GET \(path) HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket", "Connection: Upgrade",
                     "Sec-WebSocket-Key: \(key)", "Sec-WebSocket-Version: 13"]
        if let origin { lines.append("Origin: \(origin)") }
        return Array((lines.joined(separator: "\r\n") + "\r\n\r\n").utf8)
    }

    /// Connects and reads the answer's head; `status` is its HTTP status (101 when upgraded).
    init(port: Int, path: String = "/gw", origin: String? = nil, receiveBuffer: Int32? = nil) throws {
        tcp = try TestClient(port: port, receiveBuffer: receiveBuffer)
        try tcp.send(Self.request(path: path, origin: origin))
        var head: [UInt8] = []
        while !(head.count >= 4 && Array(head.suffix(4)) == [13, 10, 13, 10]) {
            guard let byte = tcp.receive(1) else { break }
            head += byte
        }
        self.head = String(decoding: head, as: UTF8.self)
    }

    let head: String
    var status: Int { Int(head.dropFirst(9).prefix(3)) ?? 0 }

    /// One client frame, masked unless `mask` is nil.
    static func frame(_ opcode: UInt8, _ payload: [UInt8], fin: Bool = true, mask: UInt32? = 0x3C5A_0F96) -> [UInt8] {
        WebSocketReaderTests.clientFrame(opcode, payload, fin: fin, mask: mask)
    }

    func send(_ bytes: [UInt8]) throws { try tcp.send(bytes) }

    /// Reads until `count` frame bytes have come, or nil on a close, end of stream or timeout.
    func receiveFrames(_ count: Int) -> [UInt8]? {
        while frames.count < count {
            guard closeCode == nil, pump() else { return nil }
        }
        defer { frames.removeFirst(count) }
        return Array(frames.prefix(count))
    }

    /// Reads until the gateway's close frame and its end of stream; the close code, or nil.
    func receiveClose() -> UInt16? {
        while closeCode == nil { guard pump() else { return nil } }
        return closeCode
    }

    /// Reads until a pong arrives; its payload.
    func receivePong() -> [UInt8]? {
        while pongs.isEmpty { guard closeCode == nil, pump() else { return nil } }
        return pongs.removeFirst()
    }

    /// One read, decoded; false at end of stream or timeout.
    private func pump() -> Bool {
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        let n = buffer.withUnsafeMutableBytes { recv(tcp.fd, $0.baseAddress!, $0.count, 0) }
        guard n > 0 else { return false }
        let outcome = buffer.withUnsafeMutableBytes { b in
            reader.decode(b.baseAddress!, count: n, maxMessage: 1 << 30) { event in
                if case .pong(let payload) = event { self.pongs.append(Array(payload)) }
            }
        }
        switch outcome {
        case .ok(let k): frames += buffer[0..<k]
        case .closed(let code, let k): frames += buffer[0..<k]; closeCode = code
        case .failed(let code, _): closeCode = 0xFFFF &- code  // never a real code: the test fails
        }
        return true
    }
}
