import Foundation
import Histogram

extension ClientReport {
    /// The latency distribution in HdrHistogram's .hgrm text form (values in
    /// microseconds), as the library prints it: percentile rows, then the #[Mean ...] footer.
    public var hgrm: String {
        var text = ""
        latency.outputPercentileDistribution(to: &text, outputValueUnitScalingRatio: 1000)
        return text
    }

    public func writeHgrm(to path: String) throws {
        try hgrm.write(toFile: path, atomically: true, encoding: .utf8)
    }
}
