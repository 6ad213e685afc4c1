import ArgumentParser
import GatewayCore

extension ArgumentHelp {
    /// Help for a numeric engine setting: default and range come from `GatewayConfig`,
    /// so the help text cannot drift from what `validate()` enforces.
    static func setting(_ key: String, _ abstract: String) -> ArgumentHelp {
        guard let entry = GatewayConfig.ranges.first(where: { $0.key == key }) else {
            preconditionFailure("no range for \(key)")
        }
        return setting(key, abstract, default: "\(GatewayConfig()[keyPath: entry.path])",
                       allowed: "\(entry.range.lowerBound)...\(entry.range.upperBound)")
    }

    /// Help naming the default, what is allowed, and the key in the file and the environment.
    static func setting(
        _ key: String, _ abstract: String, default value: String, allowed: String, valueName: String = "n"
    ) -> ArgumentHelp {
        ArgumentHelp(
            "\(abstract) Default \(value); allowed \(allowed). File key \(key), env \(Settings.environmentName(of: key)).",
            valueName: valueName
        )
    }
}
