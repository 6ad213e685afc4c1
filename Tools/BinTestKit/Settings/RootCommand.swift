import ArgumentParser

/// The command tree, used for parsing and help only: `BinTest.main` runs what it parsed.
struct RootCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "bin_test",
        abstract: "Echo server, echo core and load client for AccessGateway.",
        discussion: """
        Long forms:
          bin_test server --host 127.0.0.1 --port 7001 [--poller epoll|poll]
          bin_test core --host 127.0.0.1 --port 7100 [--delay-us N] [--fail-every N]
          bin_test client --host H --port P [--conns N] [--threads T]
              [--pipeline D] [--size B] [--duration S] [--json] [--hgrm FILE]
              [--mode load|pingpong|connrate|idle] [--rate R] [--count N]

        The original tool's command line is accepted too:
          bin_test 1 HOST PORT
              same as: bin_test server --host HOST --port PORT
          bin_test 0 HOST PORT [CONNS] [THREADS]
              same as: bin_test client --host HOST --port PORT
                       --conns CONNS --threads THREADS
        Flags may follow the positional values: bin_test 0 127.0.0.1 7001 --json
        """,
        subcommands: [ServerCommand.self, ClientCommand.self, CoreCommand.self, RestartProbeCommand.self]
    )
}
