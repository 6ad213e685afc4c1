import Atomics
import CTLS
import Glibc

/// An OpenSSL server context built from `TLSSettings`, shared by every thread (OpenSSL locks its
/// own state). A reload builds a new one and swaps it in; each connection holds a reference to the
/// context it began with, so replacing one affects only handshakes that start later.
final class TLSServerContext: AtomicReference, @unchecked Sendable {  // immutable after init
    let pointer: OpaquePointer

    /// Reads the certificate, key and CA files now; a file that is missing, malformed or a key
    /// that does not match is a `ConfigError` naming `tls_cert` and the reason.
    init(_ settings: TLSSettings, tickets: TicketKeys) throws(ConfigError) {
        var error = [CChar](repeating: 0, count: 512)
        let certificates = settings.pairs.map { strdup($0.certificate) }
        let keys = settings.pairs.map { strdup($0.key) }
        defer { (certificates + keys).forEach { free($0) } }
        let alpn = settings.alpn.joined(separator: ",")
        let built = certificates.map { UnsafePointer($0) }.withUnsafeBufferPointer { c in
            keys.map { UnsafePointer($0) }.withUnsafeBufferPointer { k in
                gw_tls_server_context(c.baseAddress, k.baseAddress, Int32(settings.pairs.count), settings.clientCA,
                                      alpn.isEmpty ? nil : alpn, tickets.pointer, &error, error.count)
            }
        }
        guard let built else {
            let paths = settings.pairs.map(\.certificate).joined(separator: ",")
            throw ConfigError(key: "tls_cert", value: paths.isEmpty ? "none" : paths,
                              allowed: "readable PEM certificates with matching keys (\(String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))))")
        }
        pointer = built
    }

    /// A client context for links: verifies the upstream against `ca` (nil: the system's store), and
    /// presents `certificate` and `key` when given.
    init(clientCA ca: String?, certificate: String?, key: String?) throws(ConfigError) {
        var error = [CChar](repeating: 0, count: 512)
        guard let built = gw_tls_client_context(1, ca, certificate, key, &error, error.count) else {
            throw ConfigError(key: "upstream_ca", value: ca ?? certificate ?? "system store",
                              allowed: "readable PEM files (\(String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)))")
        }
        pointer = built
    }

    deinit { gw_tls_context_free(pointer) }
}
