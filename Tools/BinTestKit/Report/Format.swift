import Foundation

/// Fixed-point numbers for the text summary and the progress line.
enum Format {
    static func fixed(_ value: Double, _ decimals: Int) -> String {
        String(format: "%.\(decimals)f", value.isFinite ? value : 0)
    }
}
