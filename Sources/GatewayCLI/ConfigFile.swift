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
        var data = try Self.contents(of: path)
        let text = String(decoding: data, as: UTF8.self)
        // A file with every line commented out is a template: read it as an empty mapping.
        if Self.isBlank(text) { data = Data("{}".utf8) }
        do {
            provider = YAMLFileProvider(
                fileSnapshot: try YAMLSnapshot(data: data.bytes, providerName: path, parsingOptions: .default))
        } catch {
            // Parser errors quote the offending line over several lines; the first says what is wrong.
            throw Self.failure(path, String(describing: error).split(separator: "\n").first.map(String.init) ?? "")
        }
        topLevelKeys = Self.topLevelKeys(in: text)
    }

    static func failure(_ path: String, _ reason: String) -> ConfigError {
        ConfigError(key: "config", value: path, allowed: "a readable YAML mapping of settings (\(reason))")
    }

    /// Plain read(2), so that a failure is reported with its errno text.
    static func contents(of path: String) throws(ConfigError) -> Data {
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else { throw failure(path, String(cString: strerror(errno))) }
        defer { close(fd) }
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        while true {
            let count = read(fd, &buffer, buffer.count)
            if count == 0 { return data }
            if count > 0 {
                data.append(contentsOf: buffer[..<count])
            } else if errno != EINTR {
                throw failure(path, String(cString: strerror(errno)))
            }
        }
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
