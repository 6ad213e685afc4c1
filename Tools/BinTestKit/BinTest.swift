/// The bin_test command: parse, run the server or the client, report, exit status.
public enum BinTest {
    /// Exit status 0 clean, 1 faults found (or the server failed to start), 2 bad command line.
    public static func main(arguments: [String]) -> Int32 {
        let invocation: Invocation
        do {
            invocation = try Invocation.parse(arguments: arguments)
        } catch {
            StandardError.write("bin_test: \(error)\n")
            return 2
        }
        switch invocation {
        case .help(let text):
            print(text)
            return 0
        case .server(let settings):
            return ServerMode.run(settings)
        case .client(let settings):
            return runClient(settings)
        case .core(let settings):
            return CoreMode.run(settings)
        }
    }

    static func runClient(_ settings: ClientSettings) -> Int32 {
        let report = ClientRun.run(settings)
        for message in report.messages { StandardError.write("bin_test: \(message)\n") }
        let hidden = Int(report.errors + report.connectFailures) - report.messages.count
        if hidden > 0 { StandardError.write("bin_test: ... and \(hidden) more\n") }
        print(settings.json ? report.json : report.text)
        if let path = settings.hgrm {
            do {
                try report.writeHgrm(to: path)
            } catch {
                StandardError.write("bin_test: cannot write --hgrm \(path): \(error)\n")
                return 1
            }
        }
        return report.exitCode
    }
}
