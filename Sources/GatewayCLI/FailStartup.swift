import Foundation

/// Ends start-up with exactly one line on stderr, so that scripts and
/// supervisors can show the reason as is.
func failStartup(_ message: String, code: Int32) -> Never {
    let line = message.split(whereSeparator: \.isNewline).joined(separator: " ")
    WorkerReport.failed(line).send()  // a worker's master stops its own start with the reason
    FileHandle.standardError.write(Data("gateway: \(line)\n".utf8))
    exit(code)
}
