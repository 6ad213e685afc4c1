import Glibc

/// A worker's word to its master, on a pipe the master passes down (GATEWAY_WORKER_REPORT_FD), one line
/// each: `READY <admin port or 0>` once it serves, or `FAILED <reason>` when it cannot start; after READY,
/// `HANDED_OVER` when it exits having handed its clients to a successor (a hot restart), which the master
/// must not take for a crash and restart. The master waits for every worker's READY at start (a worker
/// that cannot start stops the whole start) and after each restart.
enum WorkerReport: Equatable {
    case ready(adminPort: Int)
    case failed(String)
    case handedOver

    static let environment = "GATEWAY_WORKER_REPORT_FD"
    /// Longest line: a reason is cut to fit.
    static let maxLength = 512

    /// Set once at start, in a worker only, before any other thread runs.
    nonisolated(unsafe) private static var fd: Int32 = -1

    /// In a worker: takes the pipe from the environment.
    static func adopt() {
        guard let text = getenv(environment).map({ String(cString: $0) }), let n = Int32(text) else { return }
        unsetenv(environment)
        fd = n
        _ = fcntl(n, F_SETFD, FD_CLOEXEC)
    }

    var line: String {
        switch self {
        case .ready(let port): "READY \(port)\n"
        case .failed(let why): "FAILED \(Self.cut(why.filter { !$0.isNewline }, toBytes: Self.maxLength - 8))\n"
        case .handedOver: "HANDED_OVER\n"
        }
    }

    /// The longest prefix of `text` within `limit` UTF-8 bytes, in whole characters (a reason in another
    /// script has characters of up to 4 bytes: a cut by characters could pass maxLength).
    private static func cut(_ text: String, toBytes limit: Int) -> Substring {
        var bytes = 0
        var end = text.startIndex
        for c in text {
            bytes += c.utf8.count
            if bytes > limit { break }
            end = text.index(after: end)
        }
        return text[..<end]
    }

    init?(parsing line: Substring) {
        if line.hasPrefix("READY "), let port = Int(line.dropFirst(6)), (0...65535).contains(port) {
            self = .ready(adminPort: port)
        } else if line.hasPrefix("FAILED ") {
            self = .failed(String(line.dropFirst(7)))
        } else if line == "HANDED_OVER" {
            self = .handedOver
        } else {
            return nil
        }
    }

    /// Sends this to the master; nothing outside a worker. The pipe stays open after READY only.
    func send() {
        guard Self.fd >= 0 else { return }
        let bytes = Array(line.utf8)
        _ = bytes.withUnsafeBytes { write(Self.fd, $0.baseAddress, $0.count) }  // a pipe write this short is atomic
        if case .ready = self { return }
        close(Self.fd)
        Self.fd = -1
    }
}
