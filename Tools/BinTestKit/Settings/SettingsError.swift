/// A flag value bin_test does not accept. Printed as one line; the exit status is 2.
public struct SettingsError: Error, Equatable, CustomStringConvertible {
    /// The flag as typed on the command line, e.g. "--conns".
    public var flag: String
    public var value: String
    public var allowed: String

    public init(flag: String, value: String, allowed: String) {
        self.flag = flag
        self.value = value
        self.allowed = allowed
    }

    public var description: String { "invalid \(flag) '\(value)': allowed \(allowed)" }
}

/// A command line ArgumentParser itself rejected (unknown flag, missing value); exit status 2.
public struct UsageError: Error, Equatable, CustomStringConvertible {
    public var message: String
    public var description: String { message }
}
