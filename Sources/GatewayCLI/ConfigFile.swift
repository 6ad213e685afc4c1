import Configuration
import Foundation
import GatewayCore

/// A YAML settings file, read once at start-up.
struct ConfigFile {
    let provider: YAMLFileProvider
    /// The file's top-level keys, to warn about the ones the gateway does not know.
    let topLevelKeys: [String]

    /// Reads and parses `path`; any failure is a `ConfigError` for the key `config`.
    init(path: String) throws(ConfigError) {
        func failure(_ reason: String) -> ConfigError {
            ConfigError(key: "config", value: path, allowed: "a readable YAML mapping of settings (\(reason))")
        }
        var data = Data()
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw failure(String(cString: strerror(errno))) }
        defer { close(fd) }
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let count = read(fd, &buffer, buffer.count)
            if count == 0 { break }
            if count < 0 {
                if errno == EINTR { continue }
                throw failure(String(cString: strerror(errno)))
            }
            data.append(contentsOf: buffer[..<count])
        }
        let text = String(decoding: data, as: UTF8.self)
        // A file with every line commented out is a template: read it as an empty mapping.
        if Self.isBlank(text) { data = Data("{}".utf8) }
        do {
            let snapshot = try YAMLSnapshot(data: data.bytes, providerName: path, parsingOptions: .default)
            provider = YAMLFileProvider(fileSnapshot: snapshot)
        } catch {
            // Parser errors quote the offending line over several lines; the first says what is wrong.
            throw failure(String(describing: error).split(separator: "\n").first.map(String.init) ?? "unparsable")
        }
        topLevelKeys = Self.topLevelKeys(in: text)
    }

    static func isBlank(_ text: String) -> Bool {
        text.split(whereSeparator: \.isNewline).allSatisfy { line in
            let content = line.drop(while: \.isWhitespace)
            return content.isEmpty || content.first == "#"
        }
    }

    /// Keys of a block mapping at column 0. swift-configuration does not list a
    /// file's keys, and the gateway's settings are flat, so this is enough for a warning.
    static func topLevelKeys(in text: String) -> [String] {
        text.split(whereSeparator: \.isNewline).compactMap { line in
            guard let first = line.first, first.isLetter || first == "_" || first == "\"" || first == "'",
                  let colon = line.firstIndex(of: ":") else { return nil }
            return line[..<colon].trimmingCharacters(in: CharacterSet(charactersIn: "\"' \t"))
        }
    }
}

/// Serves a YAML snapshot that was parsed synchronously: swift-configuration's
/// `FileProvider` only loads asynchronously, and start-up here is synchronous
/// so that signals can be blocked before any thread exists.
struct YAMLFileProvider: ConfigProvider {
    let fileSnapshot: YAMLSnapshot

    var providerName: String { fileSnapshot.providerName }

    func value(forKey key: AbsoluteConfigKey, type: ConfigType) throws -> LookupResult {
        try fileSnapshot.value(forKey: key, type: type)
    }

    func fetchValue(forKey key: AbsoluteConfigKey, type: ConfigType) async throws -> LookupResult {
        try value(forKey: key, type: type)
    }

    nonisolated(nonsending) func watchValue<Return: ~Copyable>(
        forKey key: AbsoluteConfigKey,
        type: ConfigType,
        updatesHandler: nonisolated(nonsending) (ConfigUpdatesAsyncSequence<Result<LookupResult, any Error>, Never>) async throws -> Return
    ) async throws -> Return {
        try await watchValueFromValue(forKey: key, type: type, updatesHandler: updatesHandler)
    }

    func snapshot() -> any ConfigSnapshot { fileSnapshot }

    nonisolated(nonsending) func watchSnapshot<Return: ~Copyable>(
        updatesHandler: nonisolated(nonsending) (ConfigUpdatesAsyncSequence<any ConfigSnapshot, Never>) async throws -> Return
    ) async throws -> Return {
        try await watchSnapshotFromSnapshot(updatesHandler: updatesHandler)
    }
}
