import Foundation
import Testing

/// `--workers`: a worker killed with SIGKILL under load is started again by the master, and no
/// connection served by another worker notices.
@Suite(.serialized) struct WorkersTests {
    @Test(.timeLimit(.minutes(2)))
    func killedWorkerIsRestartedAndTheOthersDoNotNotice() throws {
        let master = try GatewayProcess(["--port", "0", "--workers", "3", "--stats-interval", "0"])
        defer { master.stop() }
        let port = try master.waitForPort(prefix: "workers on 127.0.0.1:")
        var pids: [Int32] = []
        for index in 0..<3 { pids.append(try master.waitForPid(of: index)) }
        _ = try master.waitFor("listening on", count: 3)

        var connections: [EchoSocket] = []
        for i in 0..<90 {
            let c = try EchoSocket(port: port)
            #expect(try c.echo(UInt32(i)))
            connections.append(c)
        }
        let owners = try SocketOwners.map(port: port, pids: pids)
        let owner = connections.map { owners[$0.localPort] }
        #expect(owner.allSatisfy { $0 != nil }, "every connection is held by a worker")
        let victim = pids.max { a, b in owner.count { $0 == a } < owner.count { $0 == b } }!
        let survivors = connections.indices.filter { owner[$0] != victim }
        let doomed = connections.indices.filter { owner[$0] == victim }
        try #require(!doomed.isEmpty && !survivors.isEmpty, "connections spread over the workers: \(owner)")

        // The survivors keep echoing, one round after another, while the victim dies and comes back.
        let failures = Counter(), rounds = Counter()
        let stop = Counter()
        let kept = survivors.map { connections[$0] }
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
        kill(victim, SIGKILL)
        let index = pids.firstIndex(of: victim)!
        _ = try master.waitFor("worker \(index) (pid \(victim)) was killed by signal 9")
        let restarted = try master.waitForPid(of: index, after: victim)
        #expect(restarted != victim)
        let seen = rounds.value
        while rounds.value < seen + 3 { usleep(10_000) }
        stop.add()
        while !load.isFinished { usleep(10_000) }
        #expect(failures.value == 0, "a surviving worker's connection noticed")

        for i in doomed { #expect(try !connections[i].echo(9)) }
        // New connections are served, the restarted worker's included once it listens.
        _ = try master.waitFor("listening on", count: 4)
        for i in 0..<30 { #expect(try EchoSocket(port: port).echo(UInt32(i))) }
        #expect(master.log.contains("restart 1,"))
    }
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
            let fds = try FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/fd")
            for fd in fds {
                guard let link = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/\(pid)/fd/\(fd)"),
                      link.hasPrefix("socket:[") else { continue }
                inodeOwner[String(link.dropFirst(8).dropLast())] = pid
            }
        }
        var owners: [UInt16: Int32] = [:]
        // Read to the end: procfs files report a size of 0, and a read by size gets one page at most.
        let file = try #require(FileHandle(forReadingAtPath: "/proc/net/tcp"))
        let table = String(decoding: file.readDataToEndOfFile(), as: UTF8.self)
        for line in table.split(separator: "\n").dropFirst() {
            let fields = line.split(separator: " ")
            guard fields.count > 9, let local = fields[1].split(separator: ":").last,
                  let remote = fields[2].split(separator: ":").last,
                  Int(local, radix: 16) == port, let client = UInt16(remote, radix: 16),
                  let pid = inodeOwner[String(fields[9])] else { continue }
            owners[client] = pid
        }
        return owners
    }
}
