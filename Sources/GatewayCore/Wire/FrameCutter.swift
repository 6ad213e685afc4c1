/// Finds whole frames in a byte range without copying: the scanning half of
/// the codec. Lengths are checked against 18...maxFrame as they are met.
@_spi(Benchmarks) public enum FrameCutter {
    public enum Scan: Equatable {
        /// `consumed` bytes are whole frames; the rest (if any) is an incomplete frame.
        case frames(consumed: Int, count: Int)
        /// A frame at `offset` declares an invalid length; bytes before it are whole frames.
        case badLength(UInt32, offset: Int, count: Int)
    }

    @inline(__always)
    public static func isValid(_ length: UInt32, maxFrame: Int) -> Bool {
        length >= UInt32(FrameHeader.size) && Int(length) <= maxFrame
    }

    @inline(__always)
    public static func scan(_ p: UnsafeRawPointer, _ n: Int, maxFrame: Int) -> Scan {
        var at = 0
        var count = 0
        while n - at >= 4 {
            let length = FrameHeader.length(at: p + at)
            guard isValid(length, maxFrame: maxFrame) else { return .badLength(length, offset: at, count: count) }
            if n - at < Int(length) { break }
            at += Int(length)
            count += 1
        }
        return .frames(consumed: at, count: count)
    }
}
