import Foundation
import Glibc
import XCTest

/// Test certificates, made at test time with the openssl command (no private key is committed):
/// a CA; server leaves for localhost (the default), other.test (SNI) and a second localhost one
/// (rotation); a client leaf the CA signed, and a self-signed one it did not. And a way to run
/// Tests/TLS/tls_probe.py (Python's ssl module) and `openssl s_client` against a gateway.
final class TLSFixtures: @unchecked Sendable {  // written once in init, then read-only
    let directory: String
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent()

    init() throws {
        guard Self.which("openssl") != nil else { throw XCTSkip("openssl not found (Tools/install-deps.sh)") }
        guard Self.which("python3") != nil else { throw XCTSkip("python3 not found") }
        directory = NSTemporaryDirectory() + "gateway-tls-\(getpid())-\(UInt32.random(in: 0...UInt32.max))"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let script = """
            set -e
            cd '\(directory)'
            ec="-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
            openssl req -x509 $ec -keyout ca.key -out ca.pem -days 2 -subj /CN=test-ca 2>/dev/null
            leaf() {  # name, subject CN, extensions
                printf '%s\\n' "$3" > $1.ext
                openssl req $ec -keyout $1.key -out $1.csr -subj "/CN=$2" 2>/dev/null
                openssl x509 -req -in $1.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out $1.pem -days 2 \\
                    -extfile $1.ext 2>/dev/null
            }
            leaf server localhost "subjectAltName=DNS:localhost,IP:127.0.0.1"
            leaf other other.test "subjectAltName=DNS:other.test"
            leaf rotated rotated.localhost "subjectAltName=DNS:localhost,IP:127.0.0.1"
            leaf client client "extendedKeyUsage=clientAuth"
            openssl req -x509 $ec -keyout rogue.key -out rogue.pem -days 2 -subj /CN=rogue 2>/dev/null
            """
        let (status, output) = try Self.run("/bin/sh", ["-c", script], timeout: 60)
        guard status == 0 else { throw XCTSkip("openssl could not make test certificates: \(output)") }
    }

    deinit { try? FileManager.default.removeItem(atPath: directory) }

    func path(_ name: String) -> String { "\(directory)/\(name)" }

    /// A pair of this fixture's files: "server" gives server.pem and server.key.
    func pair(_ name: String) -> TLSSettingsPair { (path("\(name).pem"), path("\(name).key")) }
    typealias TLSSettingsPair = (certificate: String, key: String)

    /// Runs a tls_probe.py command; its one output line, and whether it exited 0.
    func probe(_ arguments: [String], timeout: Double = 60) throws -> (ok: Bool, line: String) {
        let script = Self.root.appendingPathComponent("Tests/TLS/tls_probe.py").path
        let (status, output) = try Self.run(Self.which("python3")!, [script] + arguments, timeout: timeout)
        let last = output.split(separator: "\n").last.map(String.init) ?? ""
        return (status == 0, last.trimmingCharacters(in: .whitespacesAndNewlines))
    }

    /// Runs `openssl s_client` with `arguments`, stdin closed at once; its whole output.
    func sClient(_ arguments: [String]) throws -> String {
        try Self.run(Self.which("openssl")!, ["s_client"] + arguments, timeout: 30).output
    }

    static func which(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        return path.split(separator: ":").map { "\($0)/\(name)" }.first { access($0, X_OK) == 0 }
    }

    /// Runs a program to its end (killed past `timeout` seconds); its exit status and stdout+stderr.
    static func run(_ program: String, _ arguments: [String], timeout: Double) throws -> (status: Int32, output: String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: program)
        p.arguments = arguments
        let pipe = Pipe()
        p.standardOutput = pipe
        p.standardError = pipe
        p.standardInput = FileHandle.nullDevice
        try p.run()
        let killer = DispatchWorkItem { if p.isRunning { kill(p.processIdentifier, SIGKILL) } }
        DispatchQueue.global().asyncAfter(deadline: .now() + timeout, execute: killer)
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        killer.cancel()
        return (p.terminationStatus, String(decoding: data, as: UTF8.self))
    }
}
