import CTLS
import Glibc

/// Session-ticket keys (docs/TLS.md, "Tickets"): derived from a secret and the hour of wall-clock time,
/// so that every process given the same secret (the workers of one master, a hot-restarted process,
/// other machines) issues and accepts the same tickets and rotates with the others without talking
/// to them. Tickets are issued under the current hour's key and accepted for one more hour. The
/// secret is `tls_ticket_key_file`'s bytes, or 32 random ones that only this process knows.
///
/// Threads: handshakes read the keys (under the C side's lock); Monitor advances the hour; a reload
/// re-reads the file. The OpenSSL contexts each hold a reference, so a context outlives a reload.
final class TicketKeys: @unchecked Sendable {  // the C side locks; `secret` and `epoch` are the reload's and Monitor's
    let pointer: OpaquePointer
    /// Seconds a key issues tickets.
    static let lifetime: UInt64 = 3600
    static let secretBytes = 32...64
    static let fileAllowed = "a readable file of 32...64 random bytes (openssl rand 48 > FILE)"
    private var secret: [UInt8]

    /// Reads `file` (nil: a random secret); a missing, unreadable or wrong-sized file names tls_ticket_key_file.
    init(file: String?) throws(ConfigError) {
        secret = try file.map { path throws(ConfigError) in try Self.read(path) } ?? []
        guard let made = secret.withUnsafeBufferPointer({
            gw_tls_tickets_new($0.baseAddress, $0.count, Self.epoch(at: time(nil)))
        }) else {
            throw ConfigError(key: "tls_ticket_key_file", value: file ?? "none", allowed: "keys derived (out of memory?)")
        }
        pointer = made
    }

    deinit { gw_tls_tickets_release(pointer) }

    /// The epoch (hour) a wall-clock time falls in.
    static func epoch(at seconds: time_t) -> UInt64 { UInt64(max(0, seconds)) / lifetime }

    static func read(_ path: String) throws(ConfigError) -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            throw ConfigError(key: "tls_ticket_key_file", value: path,
                              allowed: "\(fileAllowed): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        // One byte past the limit tells a longer file apart; pread from 0 reads a memfd afresh.
        var bytes = [UInt8](repeating: 0, count: secretBytes.upperBound + 1)
        let n = bytes.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, 0) }
        guard n >= 0, secretBytes.contains(n) else {
            throw ConfigError(key: "tls_ticket_key_file", value: path, allowed: n < 0 ? "\(fileAllowed): "
                + String(cString: strerror(errno)) : "\(fileAllowed); it has \(n)\(n > secretBytes.upperBound ? "+" : "")")
        }
        return Array(bytes.prefix(n))
    }

    /// A reload: the file read again; a changed secret replaces the keys (open connections are not
    /// affected; tickets under the old secret make a full handshake). Without a file nothing changes.
    func reload(file: String?) throws(ConfigError) {
        guard let file else { return }
        let new = try Self.read(file)
        guard new != secret else { return }
        guard new.withUnsafeBufferPointer({ gw_tls_tickets_rekey(pointer, $0.baseAddress, $0.count) }) == 1 else {
            throw ConfigError(key: "tls_ticket_key_file", value: file, allowed: "keys derived (out of memory?)")
        }
        secret = new
    }

    /// Monitor: a new hour rotates the keys (never back, should the clock step back).
    func advance(to epoch: UInt64) { _ = gw_tls_tickets_advance(pointer, epoch) }

    var epoch: UInt64 { gw_tls_tickets_epoch(pointer) }
}
