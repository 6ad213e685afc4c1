import COpenSSL
import CTLS
import Foundation
import Glibc
@_spi(Benchmarks) @testable import GatewayCore

/// A blocking TLS client over TestClient's socket (so every read and write has a timeout), on the
/// same CTLS glue as the gateway's own links and the load tool.
final class TLSTestClient: @unchecked Sendable {  // used by one thread at a time
    struct Failure: Error, CustomStringConvertible {
        var description: String
    }

    let tcp: TestClient
    private let ssl: OpaquePointer

    /// - Parameter receiveBuffer: SO_RCVBUF before connecting (a small one makes a slow reader).
    /// - Parameter suites: the TLS 1.3 cipher suites offered (OpenSSL's list syntax), or OpenSSL's default.
    init(port: Int, ca: String?, serverName: String = "localhost", cert: String? = nil, key: String? = nil,
         receiveBuffer: Int32? = nil, timeoutSeconds: Int = 5, suites: String? = nil) throws {
        tcp = try TestClient(port: port, timeoutSeconds: timeoutSeconds, receiveBuffer: receiveBuffer)
        var error = [CChar](repeating: 0, count: 512)
        guard let context = gw_tls_client_context(ca == nil ? 0 : 1, ca, cert, key, &error, error.count) else {
            throw Failure(description: String(decoding: error.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) },
                                              as: UTF8.self))
        }
        defer { gw_tls_context_free(context) }  // each connection holds its own reference
        guard let ssl = gw_tls_new(context, tcp.fd, 0, serverName, ca == nil ? nil : serverName) else {
            throw Failure(description: "SSL_new failed")
        }
        self.ssl = ssl
        if let suites, SSL_set_ciphersuites(ssl, suites) != 1 {
            throw Failure(description: "cipher suites \(suites) refused")
        }
        let status = gw_tls_handshake(ssl)
        guard status == GW_TLS_OK else {
            throw Failure(description: "handshake: \(status) \(String(cString: gw_tls_last_reason()))")
        }
    }

    deinit {
        gw_tls_free(ssl)
        keyUpdates.deallocate()
    }

    func send(_ bytes: [UInt8]) throws {
        var done = 0
        while done < bytes.count {
            var status = GW_TLS_OK
            let n = bytes.withUnsafeBytes { gw_tls_write(ssl, $0.baseAddress! + done, $0.count - done, &status) }
            guard n > 0 else { throw Failure(description: "write: \(status)") }
            done += n
        }
    }

    /// Exactly `count` bytes, or nil (closed, failed or timed out).
    func receive(_ count: Int) -> [UInt8]? {
        var bytes = [UInt8](repeating: 0, count: count)
        var done = 0
        while done < count {
            var status = GW_TLS_OK
            let n = bytes.withUnsafeMutableBytes { gw_tls_read(ssl, $0.baseAddress! + done, count - done, &status) }
            guard n > 0 else { return nil }
            done += n
        }
        return bytes
    }

    func echoes(_ frame: [UInt8]) -> Bool {
        guard (try? send(frame)) != nil else { return false }
        return receive(frame.count) == frame
    }

    /// Sends a KeyUpdate with the next write (asking the server for its own when `requestPeer`).
    func updateKeys(requestPeer: Bool) -> Bool {
        SSL_key_update(ssl, requestPeer ? SSL_KEY_UPDATE_REQUESTED : SSL_KEY_UPDATE_NOT_REQUESTED) == 1
    }

    /// KeyUpdate messages received from the server, once `countKeyUpdates()` has been called.
    private let keyUpdates = UnsafeMutablePointer<Int>.allocate(capacity: 1)

    func countKeyUpdates() {
        keyUpdates.pointee = 0
        SSL_set_msg_callback(ssl) { writing, _, contentType, bytes, length, _, counter in
            guard writing == 0, contentType == SSL3_RT_HANDSHAKE, length > 0,
                  bytes!.load(as: UInt8.self) == UInt8(SSL3_MT_KEY_UPDATE) else { return }
            counter!.assumingMemoryBound(to: Int.self).pointee += 1
        }
        SSL_ctrl(ssl, SSL_CTRL_SET_MSG_CALLBACK_ARG, 0, keyUpdates)
    }

    var keyUpdatesReceived: Int { keyUpdates.pointee }

    /// The server certificate's common name.
    var peerName: String {
        guard let cert = SSL_get1_peer_certificate(ssl) else { return "none" }
        defer { X509_free(cert) }
        var name = [CChar](repeating: 0, count: 256)
        X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, &name, Int32(name.count))
        return String(decoding: name.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    var version: String { String(cString: gw_tls_version(ssl)) }

    var cipherSuite: String { String(cString: SSL_CIPHER_get_name(SSL_get_current_cipher(ssl))) }
}
