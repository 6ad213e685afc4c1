/// How a client connection carries its frames.
public enum ClientTransport: String, CaseIterable, Sendable {
    /// Frames straight on the TCP stream.
    case tcp
    /// Frames in WebSocket binary messages after an opening handshake (docs/WEBSOCKET.md).
    case ws
    /// Frames in datagrams of whole frames, the gateway's address token echoed (docs/UDP.md).
    case udp
}
