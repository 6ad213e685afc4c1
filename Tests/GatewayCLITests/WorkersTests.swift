import Foundation
import Testing

/// `--workers`: each worker accepts from its own SO_REUSEPORT socket, which the master holds. Which
/// worker holds a connection is read off /proc (SocketOwners), never inferred from timing.
@Suite(.serialized) struct WorkersTests {
    struct Spread: Sendable, CustomTestStringConvertible {
        let workers: Int
        let connections: Int
        /// Microseconds between connects on each thread.
        let gap: UInt32
        let threads: Int
        var testDescription: String {
            "\(workers) workers, \(connections) connections, \(threads) threads, gap \(gap) us"
        }
    }

    /// The kernel places each connection on one of the N sockets at random, so a worker's count is
    /// binomial. With these counts a worker beyond +-25% of the mean is 5.6 (2 workers, 500) and 5.8
    /// (4 workers, 1,600) standard deviations out: about 3e-8 per run, whatever the arrival pattern.
    @Test(.timeLimit(.minutes(3)), arguments: [
        Spread(workers: 2, connections: 500, gap: 5000, threads: 1),
        Spread(workers: 2, connections: 500, gap: 0, threads: 10),
        Spread(workers: 4, connections: 1600, gap: 5000, threads: 1),
        Spread(workers: 4, connections: 1600, gap: 0, threads: 16),
    ])
    func connectionsSpreadWithinAQuarterOfTheMean(_ spread: Spread) throws {
        let master = try GatewayProcess(["--port", "0", "--workers", "\(spread.workers)", "--stats-interval", "0"])
        defer { master.stop() }
        let port = try master.waitForPort(prefix: "workers on 127.0.0.1:")
        let pids = try (0..<spread.workers).map { try master.waitForPid(of: $0) }

        let opened = Clients()
        let threads = (0..<spread.threads).map { _ in
            Thread {
                for _ in 0..<spread.connections / spread.threads {
                    opened.add(try? EchoSocket(port: port))
                    if spread.gap > 0 { usleep(spread.gap) }
                }
            }
        }
        for t in threads { t.start() }
        while !threads.allSatisfy(\.isFinished) { usleep(10_000) }
        let clients = opened.all
        try #require(clients.count == spread.connections, "every connect succeeded")

        let owners = try SocketOwners.waitForAll(clients.map(\.localPort), port: port, pids: pids)
        let counts = pids.map { pid in clients.count { owners[$0.localPort] == pid } }
        let mean = Double(spread.connections) / Double(spread.workers)
        #expect(counts.allSatisfy { abs(Double($0) - mean) <= mean / 4 }, "per worker: \(counts), mean \(mean)")
    }

    /// The frame `TestClient.echo(seq)` sends.
    static func frame(_ seq: Int) -> [UInt8] { TestClient.frame(seq: UInt32(seq), uid: 0, body: [1, 2, 3, 4]) }

    /// Kill -9 one worker under load. The master is stopped meanwhile (SIGSTOP), so the dead worker's
    /// socket surely stays without a worker while connections arrive: they are opened until the kernel
    /// shows some queued on it. Then the master goes on and starts the replacement, which serves them.
    @Test(.timeLimit(.minutes(3)))
    func killedWorkerIsRestartedAndTheOthersDoNotNotice() throws {
        let master = try GatewayProcess(["--port", "0", "--workers", "3", "--stats-interval", "0"])
        let masterPid = master.process.processIdentifier
        defer {
            kill(masterPid, SIGCONT)
            master.stop()
        }
        let port = try master.waitForPort(prefix: "workers on 127.0.0.1:")
        let pids = try (0..<3).map { try master.waitForPid(of: $0) }
        let victim = pids[0]

        // Enough connections that every worker holds five (bounded: each takes a third of them).
        var connections: [EchoSocket] = []
        var owners: [UInt16: Int32] = [:]
        for round in 0..<20 {
            for i in 0..<30 {
                // 30 s, not 5: one echo timed out at load 25 beside HotRestartTests, and every later
                // echo on that connection then read the late reply (759 failures from one slow moment).
                let c = try EchoSocket(port: port, timeoutSeconds: 30)
                #expect(try c.echo(UInt32(round * 30 + i)))
                connections.append(c)
            }
            owners = try SocketOwners.waitForAll(connections.map(\.localPort), port: port, pids: pids)
            if pids.allSatisfy({ pid in connections.count { owners[$0.localPort] == pid } >= 5 }) { break }
        }
        let doomed = connections.filter { owners[$0.localPort] == victim }
        let kept = connections.filter { owners[$0.localPort] != victim }
        try #require(doomed.count >= 5 && kept.count >= 10, "each worker holds connections")
        let victimSocket = try #require(try SocketOwners.listeningInodes(pid: victim, port: port).first)

        // The survivors keep echoing, one round after another, while the victim dies and comes back.
        let failures = Counter(), rounds = Counter(), stop = Counter()
        let load = Thread {
            var seq: UInt32 = 1000
            while stop.value == 0 {
                for connection in kept {
                    seq += 1
                    if (try? connection.echo(seq)) != true { failures.add() }
                }
                rounds.add()
            }
        }
        load.start()
        while rounds.value < 3 { usleep(10_000) }
        kill(masterPid, SIGSTOP)
        kill(victim, SIGKILL)
        while !SocketOwners.isDead(victim) { usleep(10_000) }
        for c in doomed { #expect(try !c.echo(9), "the dead worker's own connections are gone") }

        // New connections while it is down: some wait in its socket, the others are served at once.
        var arrivals: [EchoSocket] = []
        while try SocketOwners.acceptQueue(inode: victimSocket, port: port) < 5, arrivals.count < 2000 {
            let c = try TestClient(port: port, timeoutSeconds: 60)
            try c.send(Self.frame(5000 + arrivals.count))
            arrivals.append(c)
        }
        #expect(try SocketOwners.acceptQueue(inode: victimSocket, port: port) >= 5, "connections queued for it")
        kill(masterPid, SIGCONT)
        _ = try master.waitFor("worker 0 (pid \(victim)) was killed by signal 9")
        let replacement = try master.waitForPid(of: 0, after: victim)
        for (i, c) in arrivals.enumerated() {
            #expect(c.receive(Self.frame(5000 + i).count) == Self.frame(5000 + i),
                    "connection \(i) opened during the restart is served, not reset")
        }
        let after = try SocketOwners.waitForAll(arrivals.map(\.localPort), port: port, pids: [replacement] + pids)
        #expect(arrivals.count { after[$0.localPort] == replacement } >= 5, "the replacement took its queue")

        let seen = rounds.value
        while rounds.value < seen + 3 { usleep(10_000) }
        stop.add()
        while !load.isFinished { usleep(10_000) }
        #expect(failures.value == 0, "a surviving worker's connection noticed")
        #expect(master.log.contains("restart 1,"))
    }
}

/// Sockets opened by several threads.
final class Clients: @unchecked Sendable {  // `lock` guards `sockets`
    private let lock = NSLock()
    private var sockets: [EchoSocket] = []
    func add(_ socket: EchoSocket?) { if let socket { lock.withLock { sockets.append(socket) } } }
    var all: [EchoSocket] { lock.withLock { sockets } }
}

/// A thread-safe count for the test's load thread.
final class Counter: @unchecked Sendable {  // `lock` guards `count`
    private let lock = NSLock()
    private var count = 0
    var value: Int { lock.withLock { count } }
    func add() { lock.withLock { count += 1 } }
}

/// Which process holds the server side of each connection to `port`, read off /proc: the client's
/// local port -> the pid whose descriptors include that socket's inode.
enum SocketOwners {
    static func map(port: Int, pids: [Int32]) throws -> [UInt16: Int32] {
        var inodeOwner: [String: Int32] = [:]
        for pid in pids {
            for inode in socketInodes(pid: pid) { inodeOwner[inode] = pid }
        }
        var owners: [UInt16: Int32] = [:]
        for fields in try table() {
            guard Int(fields[1].split(separator: ":").last ?? "", radix: 16) == port,
                  let client = UInt16(fields[2].split(separator: ":").last ?? "", radix: 16), client != 0,
                  let pid = inodeOwner[String(fields[9])] else { continue }
            owners[client] = pid
        }
        return owners
    }

    /// The owners once every one of `clients` is accepted by one of `pids` (for at most 60 s: a bound on
    /// a slow machine, not a timing the outcome depends on).
    static func waitForAll(_ clients: [UInt16], port: Int, pids: [Int32]) throws -> [UInt16: Int32] {
        let deadline = Date().addingTimeInterval(60)
        while true {
            let owners = try map(port: port, pids: pids)
            if clients.allSatisfy({ owners[$0] != nil }) || Date() > deadline { return owners }
            usleep(20_000)
        }
    }

    /// The inodes of the listening sockets on `port` that `pid` holds.
    static func listeningInodes(pid: Int32, port: Int) throws -> [String] {
        let held = Set(socketInodes(pid: pid))
        return try table().filter { row in
            row[3] == "0A" && Int(row[1].split(separator: ":").last ?? "", radix: 16) == port
                && held.contains(String(row[9]))
        }.map { String($0[9]) }
    }

    /// How many connections wait in the accept queue of listening socket `inode` (rx_queue of a LISTEN row).
    static func acceptQueue(inode: String, port: Int) throws -> Int {
        guard let row = try table().first(where: { $0[3] == "0A" && String($0[9]) == inode }),
              let queue = row[4].split(separator: ":").last else { return 0 }
        return Int(queue, radix: 16) ?? 0
    }

    /// Gone, or a zombie its stopped parent has not reaped: either way its descriptors are closed.
    static func isDead(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
              let close = stat.lastIndex(of: ")") else { return true }
        return stat[stat.index(close, offsetBy: 2)] == "Z"
    }

    private static func socketInodes(pid: Int32) -> [String] {
        let fds = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")) ?? []
        return fds.compactMap { fd in
            guard let link = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)"),
                  link.hasPrefix("socket:[") else { return nil }
            return String(link.dropFirst(8).dropLast())
        }
    }

    /// /proc/net/tcp's rows, split into fields.
    private static func table() throws -> [[Substring]] {
        // Read to the end: procfs files report a size of 0, and a read by size gets one page at most.
        let file = try #require(FileHandle(forReadingAtPath: "/proc/net/tcp"))
        defer { try? file.close() }
        let text = String(decoding: file.readDataToEndOfFile(), as: UTF8.self)
        return text.split(separator: "\n").dropFirst().map { $0.split(separator: " ") }.filter { $0.count > 9 }
    }
}
