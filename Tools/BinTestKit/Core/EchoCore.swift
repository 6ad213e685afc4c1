import Atomics
import Glibc
import GatewayCore
import LinkCore

/// `bin_test core`'s application: answers every DATA with the identical frame
/// (no copy), counts sessions opened and closed; for tests it can delay each
/// answer and fail every Nth one.
public final class EchoCore: CoreHandler {
    /// The status a failed answer carries (an application error, not a gateway status).
    public static let failureStatus: UInt32 = 500
    private let delayMicroseconds: UInt32
    private let failEvery: Int
    private var answered = 0
    // Written on the core's Deal stage, read by other threads.
    private let openedCount = ManagedAtomic<Int>(0)
    private let closedCount = ManagedAtomic<Int>(0)
    public let dataFrames = ManagedAtomic<Int>(0)

    public init(delayMicroseconds: Int = 0, failEvery: Int = 0) {
        self.delayMicroseconds = UInt32(delayMicroseconds)
        self.failEvery = failEvery
    }

    public var opened: Int { openedCount.load(ordering: .relaxed) }
    public var closed: Int { closedCount.load(ordering: .relaxed) }

    public func opened(_ session: CoreSession, peer: PeerAddress) {
        openedCount.wrappingIncrement(ordering: .relaxed)
    }

    public func closed(_ session: CoreSession, cause: UInt8) {
        closedCount.wrappingIncrement(ordering: .relaxed)
    }

    public func received(_ frame: Frame, clientFrame: UnsafeRawBufferPointer, from session: CoreSession) {
        dataFrames.wrappingIncrement(ordering: .relaxed)
        if delayMicroseconds > 0 { usleep(delayMicroseconds) }
        answered += 1
        if failEvery > 0 && answered % failEvery == 0 {
            var header = FrameHeader(decoding: clientFrame.baseAddress!)
            header.status = EchoCore.failureStatus
            session.send(header)
        } else {
            session.echo(frame)
        }
    }
}
