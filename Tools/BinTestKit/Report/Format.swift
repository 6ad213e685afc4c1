import Glibc

/// Fixed-point text without Foundation's locale machinery.
enum Format {
    static func fixed(_ value: Double, _ decimals: Int) -> String {
        guard value.isFinite else { return "0" }
        var buffer = [CChar](repeating: 0, count: 64)
        _ = buffer.withUnsafeMutableBufferPointer { pointer in
            withVaList([decimals, value]) { vsnprintf(pointer.baseAddress, 64, "%.*f", $0) }
        }
        return String(cString: buffer)
    }
}
