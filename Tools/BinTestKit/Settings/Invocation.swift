import ArgumentParser

/// What a command line asks for. Parsing is a pure function, so tests can compare forms.
public enum Invocation: Equatable, Sendable {
    case server(ServerSettings)
    case client(ClientSettings)
    case core(CoreSettings)
    /// --help (or no subcommand): the text to print.
    case help(String)

    /// Parses the arguments after the program name, in the long or the legacy form.
    /// Throws `SettingsError` for a bad value and `UsageError` for anything else wrong.
    public static func parse(arguments: [String]) throws -> Invocation {
        do {
            var command = try RootCommand.parseAsRoot(LegacyArguments.translate(arguments))
            switch command {
            case let client as ClientCommand: return .client(try ClientSettings(client))
            case let server as ServerCommand: return .server(try ServerSettings(server))
            case let core as CoreCommand: return .core(try CoreSettings(core))
            case is RootCommand: throw UsageError(message: "missing subcommand: server, client, 0 or 1 (see --help)")
            default:
                // ArgumentParser's own help command: running it throws the help request.
                try command.run()
                throw UsageError(message: "unexpected command (see --help)")
            }
        } catch let error as SettingsError {
            throw error
        } catch let error as UsageError {
            throw error
        } catch {
            if RootCommand.exitCode(for: error) == .success {
                return .help(RootCommand.fullMessage(for: error))
            }
            throw UsageError(message: RootCommand.message(for: error).split(separator: "\n").joined(separator: " "))
        }
    }
}
