/// The original tool's positional command line, rewritten into the long form:
/// `1 HOST PORT` runs the server, `0 HOST PORT [CONNS] [THREADS]` the client.
enum LegacyArguments {
    static func translate(_ arguments: [String]) -> [String] {
        guard let first = arguments.first, first == "0" || first == "1" else { return arguments }
        let names = first == "1" ? ["--host", "--port"] : ["--host", "--port", "--conns", "--threads"]
        var translated = [first == "1" ? "server" : "client"]
        var rest = arguments.dropFirst()
        for name in names {
            // A flag ends the positional values; a negative number does not, so that it
            // reaches validation (as --name=value, which ArgumentParser cannot take for a flag).
            guard let value = rest.first, !value.hasPrefix("-") || Int(value) != nil else { break }
            translated.append("\(name)=\(value)")
            rest = rest.dropFirst()
        }
        return translated + rest
    }
}
