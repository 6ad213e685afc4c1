import Glibc

/// Turns flag text into checked values. Flags arrive as strings so that every bad
/// value, including one that is not a number, gets the same one-line message.
enum FlagValue {
    static func integer(_ flag: String, _ text: String, in range: ClosedRange<Int>) throws(SettingsError) -> Int {
        guard let value = Int(text), range.contains(value) else {
            throw SettingsError(flag: flag, value: text, allowed: "an integer in \(range.lowerBound)...\(range.upperBound)")
        }
        return value
    }

    static func seconds(_ flag: String, _ text: String, in range: ClosedRange<Double>) throws(SettingsError) -> Double {
        guard let value = Double(text), value.isFinite, range.contains(value) else {
            throw SettingsError(flag: flag, value: text, allowed: "seconds in \(format(range.lowerBound))...\(format(range.upperBound))")
        }
        return value
    }

    static func choice<T: RawRepresentable & CaseIterable>(_ flag: String, _ text: String, as type: T.Type) throws(SettingsError) -> T
    where T.RawValue == String {
        guard let value = T(rawValue: text) else {
            throw SettingsError(flag: flag, value: text, allowed: T.allCases.map(\.rawValue).joined(separator: ", "))
        }
        return value
    }

    /// An IPv4 literal, or "localhost" for 127.0.0.1. No name lookup: bin_test contacts
    /// exactly the address the user typed.
    static func ipv4Host(_ flag: String, _ text: String) throws(SettingsError) -> String {
        let host = text == "localhost" ? "127.0.0.1" : text
        var address = in_addr()
        guard inet_pton(AF_INET, host, &address) == 1 else {
            throw SettingsError(flag: flag, value: text, allowed: "an IPv4 address such as 127.0.0.1")
        }
        return host
    }

    private static func format(_ value: Double) -> String {
        value == value.rounded() ? String(Int(value)) : String(value)
    }
}
