import ArgumentParser

/// `bin_test client`: the flags as typed; `ClientSettings.init(_:)` checks them.
struct ClientCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "client",
        abstract: "Load an echo server on HOST:PORT and check every reply byte for byte.",
        discussion: """
        Each request is a frame of cmd 1, uid = connection index, and a body whose byte i is \
        UInt8(truncatingIfNeeded: seq &* 31 &+ i). Every reply must carry the request's seq (in order), \
        cmd, uid and body, with status 0. A wrong reply, a reply cut short, a close with requests \
        outstanding or a reply still missing --grace seconds after --duration is an error: it is \
        printed with its connection index and seq, and the exit status is 1.

        Modes: load (closed loop, --pipeline requests in flight per connection); pingpong (one in \
        flight, default one connection); connrate (connect, one echo, close, repeat; --conns \
        connections at a time); idle (open --conns connections, one echo each, hold them --duration \
        seconds, one echo each again; every one must survive). --pipeline applies to load only. \
        With --rate, requests leave on a fixed schedule whatever the replies do, and latency counts \
        from the scheduled time; --pipeline is then only a cap on requests outstanding per connection. \
        --count is ignored in idle mode.

        Push mode measures `bin_test core --push-rate` through the gateways: each connection sends a \
        LOGIN (cmd 10, body uid and room, both (index % --push-uids) + 1) and checks its echo; once every \
        connection of a thread is logged in, the first push starts that thread's --duration seconds of \
        reading. Every push must carry cmd 99, status 0, --push-size body bytes in the core's pattern, \
        the --push-scope and the connection's own uid (scope uid), room (room) or 0 (all): anything \
        else, a push meant for another recipient included, is an error. Latency is the core's send \
        stamp to the read; replies count the pushes delivered in the window. With --count N the window \
        also closes once N pushes (split evenly over the connections, N at least --conns) have arrived.

        Exit status: 0 clean run, 1 any error or connect failure (or no reply at all), 2 bad flags.
        """
    )

    @Option(help: "Server IPv4 address.")
    var host = "127.0.0.1"
    @Option(help: "Server port (1...65535).")
    var port = "7001"
    @Option(help: "Local IPv4 addresses to connect from, comma-separated, taken in turn (default: the kernel's choice). On loopback each of 127.0.0.2, 127.0.0.3, ... brings ephemeral ports of its own, so connrate is not capped by one address's ports.")
    var source: String?
    @Option(help: "load | pingpong | connrate | idle | push.")
    var mode = "load"
    @Option(help: "Connections (1...100000; default 32, 1 in pingpong).")
    var conns: String?
    @Option(help: "Client threads, each with its own epoll loop (1...64, at most --conns; default min(2, conns)).")
    var threads: String?
    @Option(help: "Requests in flight per connection in load mode (1...4096).")
    var pipeline = "16"
    @Option(help: "Body bytes per request (0...1048558).")
    var size = "512"
    @Option(help: "Seconds of sending (0.1...86400).")
    var duration = "10"
    @Option(help: "Open loop: total requests per second on a fixed schedule (load or pingpong; 1...10000000).")
    var rate: String?
    @Option(help: "Stop after this many requests in total (connections in connrate; 1...1000000000000).")
    var count: String?
    @Option(help: "Seconds a reply may take after --duration (and per idle echo round) before it is a stall (0.1...600).")
    var grace = "3"
    @Option(help: "Push mode: connections log in as uids (and rooms) 1...N in turn (1...1000000000; default 1).")
    var pushUids: String?
    @Option(help: "Push mode: the core's --push-scope, uid | room | all (default uid).")
    var pushScope: String?
    @Option(help: "Push mode: the core's --push-size, body bytes of each push (24...1048558; default 64).")
    var pushSize: String?
    @Option(help: ArgumentHelp("tcp | ws | udp: plain frames, frames in WebSocket binary messages (the gateway's ws:// "
                               + "listener), or frames in datagrams of up to 1,472 bytes (its udp:// listener; a lost "
                               + "datagram is a fault)."))
    var transport = "tcp"
    @Option(help: "With --transport ws: the listener's path.")
    var wsPath = "/gw"
    @Option(help: "Write the latency distribution (microseconds) to this file in HdrHistogram .hgrm form.")
    var hgrm: String?
    @Flag(help: "Speak TLS to the server (every mode; connrate then measures full handshakes).")
    var tls = false
    @Option(help: "With --tls: verify the server's certificate against this CA file (PEM); default: no verification.")
    var tlsCa: String?
    @Option(help: "With --tls: the server name sent (SNI) and, with --tls-ca, verified; default: none.")
    var tlsSni: String?
    @Flag(help: "Print the final summary as one JSON object on stdout.")
    var json = false
    @Flag(help: "No progress lines on stderr.")
    var quiet = false
}
