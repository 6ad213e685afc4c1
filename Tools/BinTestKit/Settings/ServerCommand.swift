import ArgumentParser

/// `bin_test server`: the flags as typed; `ServerSettings.init(_:)` checks them.
struct ServerCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "server",
        abstract: "Run the gateway engine with the echo handler until SIGINT or SIGTERM.",
        discussion: "The same engine and handler as `gateway`. Port 0 picks a free port and prints it."
    )

    @Option(help: "Address to listen on (IPv4).")
    var host = "127.0.0.1"
    @Option(help: "Port to listen on (0...65535).")
    var port = "7001"
    @Option(help: "epoll | poll.")
    var poller = "epoll"
}
