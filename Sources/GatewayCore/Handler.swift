/// Application logic. Every callback runs on the Deal stage: callbacks never run
/// concurrently with one another, and one connection's frames arrive in order.
public protocol GatewayHandler: AnyObject {
    /// A connection was accepted.
    func opened(_ connection: Connection)
    /// One frame arrived. `frame` and its bytes are valid only during the call.
    func received(_ frame: Frame, on connection: Connection)
    /// The connection is gone; its handle no longer sends.
    func closed(_ connection: Connection, cause: CloseCause)
    /// True when `tick` should be called on every clock tick (`tick_ms`).
    var wantsTicks: Bool { get }
    /// A clock tick on the Deal stage, for work of the handler's own (a core pushing on a schedule).
    func tick(milliseconds: UInt64)
}

extension GatewayHandler {
    public func opened(_ connection: Connection) {}
    public func closed(_ connection: Connection, cause: CloseCause) {}
    public var wantsTicks: Bool { false }
    public func tick(milliseconds: UInt64) {}
}

/// A received frame, borrowed for the length of a handler callback.
public struct Frame {
    public let header: FrameHeader
    /// The whole frame, header included.
    public let bytes: UnsafeRawBufferPointer
    /// Where the bytes live, so that `Connection.forward` can send them without a copy.
    let descriptor: FrameDescriptor

    /// The body: the bytes after the header.
    public var body: UnsafeRawBufferPointer { UnsafeRawBufferPointer(rebasing: bytes[FrameHeader.size...]) }
}

/// The default handler: answers every frame with the identical frame.
public final class EchoHandler: GatewayHandler {
    public init() {}

    public func received(_ frame: Frame, on connection: Connection) {
        connection.forward(frame)
    }
}
