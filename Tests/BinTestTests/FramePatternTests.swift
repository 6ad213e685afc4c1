import GatewayCore
import XCTest
@testable import BinTestKit

final class FramePatternTests: XCTestCase {
    /// The stream written in pieces, from any offset, equals the frames written whole.
    func testFillFromAnyOffsetContinuesTheStream() {
        let pattern = FramePattern(bodySize: 40)
        defer { pattern.deallocate() }
        let frames = 3 * pattern.frameSize
        var whole = [UInt8](repeating: 0, count: frames)
        let written = whole.withUnsafeMutableBytes {
            pattern.fill($0.baseAddress!, capacity: frames, from: 7, offset: 0, until: 10, uid: 9)
        }
        XCTAssertEqual(written, frames)
        for chunk in [1, 5, 17, 18, 19, 58, 100] {
            var pieces: [UInt8] = []
            var seq: UInt32 = 7
            var offset = 0
            while seq != 10 {
                var buffer = [UInt8](repeating: 0, count: chunk)
                let count = buffer.withUnsafeMutableBytes {
                    pattern.fill($0.baseAddress!, capacity: chunk, from: seq, offset: offset, until: 10, uid: 9)
                }
                pieces += buffer[..<count]
                let total = offset + count
                seq += UInt32(total / pattern.frameSize)
                offset = total % pattern.frameSize
            }
            XCTAssertEqual(pieces, whole, "chunk \(chunk)")
        }
    }

    func testFrameLayout() {
        let pattern = FramePattern(bodySize: 300)
        defer { pattern.deallocate() }
        var frame = [UInt8](repeating: 0, count: pattern.frameSize)
        _ = frame.withUnsafeMutableBytes {
            pattern.fill($0.baseAddress!, capacity: $0.count, from: 12, offset: 0, until: 13, uid: 4)
        }
        let header = frame.withUnsafeBytes { FrameHeader(decoding: $0.baseAddress!) }
        XCTAssertEqual(header, FrameHeader(length: 318, seq: 12, cmd: 1, status: 0, uid: 4))
        for i in 0..<300 {
            XCTAssertEqual(frame[18 + i], UInt8(truncatingIfNeeded: 12 &* 31 &+ i))
        }
    }
}
