import Glibc

/// `--take-over PATH`: the new process's side of a hot restart. It asks the running gateway at PATH
/// for its listening sockets, starts serving on them, then says so; only then does the old one
/// stop accepting and drain. Until `started()` the old process serves as before, so a new one
/// that fails to start changes nothing.
struct TakeOver {
    let listeners: [Int32]
    private let stream: UnixStream

    init(path: String) throws(HandoverError) {
        stream = try UnixStream.connect(to: path)
        stream.setTimeout(seconds: 60)
        try stream.send("TAKEOVER 1")
        guard let reply = try stream.receive() else { throw HandoverError("\(path) closed without answering") }
        let words = reply.line.split(separator: " ")
        guard words.first == "LISTENERS", words.count == 2, Int(words[1]) == reply.descriptors.count,
              !reply.descriptors.isEmpty else {
            for fd in reply.descriptors { close(fd) }
            throw HandoverError("\(path) answered '\(reply.line.prefix(60))'")
        }
        listeners = reply.descriptors
    }

    /// Serving on the listeners: the old process stops accepting; returns its drain window in seconds.
    func started() throws(HandoverError) -> Int {
        try stream.send("STARTED")
        guard let reply = try stream.receive(), reply.line.hasPrefix("DRAINING "),
              let seconds = Int(reply.line.dropFirst("DRAINING ".count)) else {
            throw HandoverError("the old process did not confirm its drain")
        }
        return seconds
    }
}
