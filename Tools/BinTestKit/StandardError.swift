import Glibc

/// Unbuffered writes to stderr, where progress lines and fault messages go so that
/// stdout carries only the summary (one JSON object with --json).
enum StandardError {
    static func write(_ text: String) {
        var text = text
        text.withUTF8 { bytes in
            var offset = 0
            while offset < bytes.count {
                let n = Glibc.write(2, bytes.baseAddress! + offset, bytes.count - offset)
                if n > 0 {
                    offset += n
                } else if n < 0 && errno == EINTR {
                    continue
                } else {
                    return
                }
            }
        }
    }

    static var isTerminal: Bool { isatty(2) != 0 }
}
