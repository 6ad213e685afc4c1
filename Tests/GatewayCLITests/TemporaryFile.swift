import Foundation
// TestClient (EchoSocket), TestProcess (GatewayProcess) and waitUntil, for every file of this target.
@_exported import TestSupport

/// A file in the temporary directory holding `contents`, removed by `remove()`.
struct TemporaryFile {
    let path: String

    init(_ contents: String) throws {
        path = FileManager.default.temporaryDirectory
            .appendingPathComponent("gateway-cli-\(UUID().uuidString).yaml").path
        try contents.write(toFile: path, atomically: true, encoding: .utf8)
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: path)
    }
}
