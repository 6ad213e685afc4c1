import Foundation
import GatewayCLI
import GatewayCore
import Testing
import TestSupport

/// TLS settings (docs/TLS.md) from flags, the environment and the file: tls:// listeners, certificate
/// and key pairs in order, and start-up refused by name when they do not fit or cannot be read.
@Suite struct TLSSettingsTests {
    static let hasOpenSSL = FileManager.default.isExecutableFile(atPath: "/usr/bin/openssl")

    /// A self-signed certificate and key made now with openssl (no key is committed); its directory.
    private func makeCertificate(name: String = "localhost") throws -> String {
        let directory = NSTemporaryDirectory() + "gateway-tls-settings-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        p.arguments = ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "1",
                       "-subj", "/CN=\(name)", "-keyout", "\(directory)/key.pem", "-out", "\(directory)/cert.pem"]
        p.standardError = FileHandle.nullDevice
        try p.run()
        p.waitUntilExit()
        return directory
    }

    @Test(.enabled(if: hasOpenSSL)) func tlsListenersParseBesidePlainOnes() throws {
        let d = try makeCertificate()
        defer { try? FileManager.default.removeItem(atPath: d) }
        let settings = try Settings.resolve(
            flags: ["listen": "tls://127.0.0.1:7443,127.0.0.1:7000,tls://[::1]:7444",
                    "tls_cert": "\(d)/cert.pem,\(d)/cert.pem", "tls_key": "\(d)/key.pem,\(d)/key.pem"],
            environment: [:], configFile: nil)
        #expect(settings.config.listen.map(\.tls) == [true, false, true])
        #expect(settings.config.listen.map(\.description) == ["tls://127.0.0.1:7443", "127.0.0.1:7000", "tls://[::1]:7444"])
        #expect(settings.config.tls.pairs.count == 2)
        #expect(settings.config.tls.pairs.first == TLSSettings.Pair(certificate: "\(d)/cert.pem", key: "\(d)/key.pem"))
        let mismatched = rejectionWith("tls_key", "\(d)/cert.pem", in: .flag,
                                   extra: ["listen": "tls://127.0.0.1:7443", "tls_cert": "\(d)/cert.pem"])
        #expect(mismatched?.key == "tls_cert", "a certificate given as the key: \(String(describing: mismatched))")
    }

    @Test(.enabled(if: hasOpenSSL)) func wssListenersAreWebSocketOverTLS() throws {
        let d = try makeCertificate()
        defer { try? FileManager.default.removeItem(atPath: d) }
        let settings = try Settings.resolve(
            flags: ["listen": "wss://127.0.0.1:8443/gw,ws://127.0.0.1:8080/gw", "tls_cert": "\(d)/cert.pem",
                    "tls_key": "\(d)/key.pem"], environment: [:], configFile: nil)
        #expect(settings.config.listen.map(\.tls) == [true, false])
        #expect(settings.config.listen.map(\.webSocketPath) == ["/gw", "/gw"])
        #expect(settings.config.listen.map(\.description) == ["wss://127.0.0.1:8443/gw", "ws://127.0.0.1:8080/gw"])
        for bad in ["wss://127.0.0.1:8443", "wss://127.0.0.1:8443/a?b", "wss://localhost:8443/gw"] {
            #expect(rejection("listen", bad, in: .flag)?.key == "listen", "\(bad)")
        }
        let uncertified = rejection("listen", "wss://127.0.0.1:8443/gw", in: .flag)
        #expect(uncertified?.key == "tls_cert", "a wss:// listener needs a certificate")
    }

    @Test(arguments: Layer.allCases) func pairsMustMatchInEveryLayer(_ layer: Layer) {
        let error = rejection("tls_cert", "/a.pem", in: layer)
        #expect(error?.key == "tls_key", "\(layer): \(String(describing: error))")
    }

    @Test func aTLSListenerNeedsACertificate() {
        #expect(throws: ConfigError.self) {
            try Settings.resolve(flags: ["listen": "tls://127.0.0.1:7443"], environment: [:], configFile: nil)
        }
        let error = rejection("listen", "tls://127.0.0.1:7443", in: .environment)
        #expect(error?.key == "tls_cert")
    }

    @Test func anUnreadableCertificateStopsStartUpByName() {
        let error = rejectionWith("listen", "tls://127.0.0.1:7443", in: .flag, extra: ["tls_cert": "/nonexistent/cert.pem",
                                                                                  "tls_key": "/nonexistent/key.pem"])
        #expect(error?.key == "tls_cert")
        #expect(error?.allowed.contains("/nonexistent/cert.pem") == true, "\(String(describing: error))")
    }

    @Test func badListenAddressesNameTheKey() {
        for bad in ["tls://", "tls://localhost:7443", "tls://127.0.0.1:70000", "tcp://127.0.0.1:7000"] {
            #expect(rejection("listen", bad, in: .flag)?.key == "listen", "\(bad)")
        }
    }

    private func rejectionWith(_ key: String, _ value: String, in layer: Layer, extra: [String: String]) -> ConfigError? {
        do {
            _ = try Settings.resolve(flags: extra.merging([key: value]) { $1 }, environment: [:], configFile: nil)
            return nil
        } catch {
            return error
        }
    }

    /// The gateway binary re-reads its certificate files on SIGHUP, changed in place; a file that no
    /// longer parses refuses the reload and the certificate in use stays.
    @Test(.enabled(if: hasOpenSSL), .timeLimit(.minutes(1))) func sighupRereadsTheCertificateFiles() throws {
        let first = try makeCertificate(name: "first"), second = try makeCertificate(name: "second")
        defer { for d in [first, second] { try? FileManager.default.removeItem(atPath: d) } }
        let (cert, key) = ("\(first)/served-cert.pem", "\(first)/served-key.pem")
        try FileManager.default.copyItem(atPath: "\(first)/cert.pem", toPath: cert)
        try FileManager.default.copyItem(atPath: "\(first)/key.pem", toPath: key)
        let port = try freePort()
        let gateway = try TestProcess(["--listen", "tls://127.0.0.1:\(port)", "--tls-cert", cert, "--tls-key", key,
                                       "--stats-interval", "0"])
        defer { _ = gateway.stop() }
        _ = try gateway.waitFor("listening on")
        #expect(try peerName(port).contains("CN = first"))

        for name in ["cert", "key"] {
            try FileManager.default.removeItem(atPath: "\(first)/served-\(name).pem")
            try FileManager.default.copyItem(atPath: "\(second)/\(name).pem", toPath: "\(first)/served-\(name).pem")
        }
        kill(gateway.process.processIdentifier, SIGHUP)
        _ = try gateway.waitFor("reloaded")
        #expect(try peerName(port).contains("CN = second"))

        try "not a certificate\n".write(toFile: cert, atomically: true, encoding: .utf8)
        kill(gateway.process.processIdentifier, SIGHUP)
        _ = try gateway.waitFor("reload refused")
        #expect(gateway.log.contains("tls_cert"))
        #expect(try peerName(port).contains("CN = second"))
    }

    /// `--workers 2` on a TLS listener: the master gives its workers one ticket secret (a memory file),
    /// so a session resumes on whichever worker the kernel hands each new connection. 24 resumptions in a
    /// row all succeed; with a secret per worker about half would make a full handshake.
    @Test(.enabled(if: hasOpenSSL), .timeLimit(.minutes(2))) func workersResumeEachOthersSessions() throws {
        let d = try makeCertificate()
        defer { try? FileManager.default.removeItem(atPath: d) }
        let port = try freePort()
        let master = try TestProcess(["--listen", "tls://127.0.0.1:\(port)", "--tls-cert", "\(d)/cert.pem",
                                      "--tls-key", "\(d)/key.pem", "--workers", "2", "--stats-interval", "0"])
        defer { _ = master.stop() }
        _ = try master.waitFor("workers on")
        let line = try probe(["resume", "--port", "\(port)", "--count", "24"])
        #expect(line == "resumed=24/24 TLSv1.3", "\(line)\n\(master.log)")
    }

    @Test(.timeLimit(.minutes(1))) func aTicketKeyFileMustHold32To64Bytes() throws {
        let d = try makeCertificate()
        defer { try? FileManager.default.removeItem(atPath: d) }
        for (count, ok) in [(31, false), (32, true), (64, true), (65, false)] {
            let path = "\(d)/ticket-\(count).key"
            try Data(repeating: 9, count: count).write(to: URL(fileURLWithPath: path))
            let error = rejectionWith("tls_ticket_key_file", path, in: .flag, extra: [
                "listen": "tls://127.0.0.1:7443", "tls_cert": "\(d)/cert.pem", "tls_key": "\(d)/key.pem"])
            #expect((error == nil) == ok, "\(count) bytes: \(String(describing: error))")
            if !ok { #expect(error?.key == "tls_ticket_key_file") }
        }
        let missing = rejectionWith("tls_ticket_key_file", "/nonexistent/ticket.key", in: .flag, extra: [
            "listen": "tls://127.0.0.1:7443", "tls_cert": "\(d)/cert.pem", "tls_key": "\(d)/key.pem"])
        #expect(missing?.key == "tls_ticket_key_file")
    }

    /// Tests/TLS/tls_probe.py's one output line (the certificate is not checked).
    private func probe(_ arguments: [String]) throws -> String {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .appendingPathComponent("TLS/tls_probe.py").path
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        p.arguments = ["python3", script] + arguments
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = FileHandle.nullDevice
        try p.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return output.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The subject `openssl s_client` reports for the server on `port`.
    private func peerName(_ port: Int) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/usr/bin/openssl")
        p.arguments = ["s_client", "-connect", "127.0.0.1:\(port)", "-brief"]
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        p.waitUntilExit()
        return output
    }

    /// A port nobody listens on once this returns.
    private func freePort() throws -> Int { try LoopbackListener().port }
}
