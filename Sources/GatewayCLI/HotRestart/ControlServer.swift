import Glibc
import GatewayCore
import Logging
import Synchronization

/// `--control-socket PATH`: where a new process started with `--take-over PATH` asks for the listening
/// sockets. One hand-over at a time on its own thread: the listeners go to the new process
/// (SCM_RIGHTS), and once it says it serves, `onHandover` starts this process's drain.
final class ControlServer: @unchecked Sendable {  // fields are set before the thread starts, or atomic
    private let path: String
    private let fd: Int32
    private let listeners: [Int32]
    private let drainSeconds: Int
    /// This process's hot restart generation; its successor's is one more (GatewayConfig.nodeInstance).
    private let generation: UInt32
    private let logger: Logger
    private let onHandover: @Sendable () -> Void
    /// The gateway whose clients a successor asking for them takes (docs/HANDOVER.md); nil (a master):
    /// none move, they drain.
    private let gateway: Gateway?
    private let handoverSeconds: Int
    private var thread: OSThread?
    private let handedOverFlag = Atomic<Bool>(false)
    private let closing = Atomic<Bool>(false)

    /// Binds `path`, refusing it while another process serves there, unless this one has just taken
    /// that one over (`successor`): then the path moves to this process, and the old one, draining, keeps
    /// its socket, unreachable, until it exits.
    init(path: String, successor: Bool, generation: UInt32, listeners: [Int32], drainSeconds: Int, logger: Logger,
         gateway: Gateway? = nil, handoverSeconds: Int = 30,
         onHandover: @escaping @Sendable () -> Void) throws(HandoverError) {
        if !successor { try Self.checkFree(path) }
        unlink(path)  // a stale socket from a process that died, or the predecessor's
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw HandoverError("socket: \(String(cString: strerror(errno)))") }
        var address = try UnixStream.socketAddress(path)
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        // Only the owner may take the listeners over.
        guard bound == 0, chmod(path, 0o600) == 0, listen(fd, 4) == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw HandoverError("control socket \(path): \(reason)")
        }
        self.path = path
        self.fd = fd
        self.listeners = listeners
        self.drainSeconds = drainSeconds
        self.generation = generation
        self.logger = logger
        self.onHandover = onHandover
        self.gateway = gateway
        self.handoverSeconds = handoverSeconds
    }

    /// Refuses `path` while a gateway serves there. A process checks it before it accepts anyone, as well
    /// as when it binds: a start that fails after accepting would close the connections it had taken (a
    /// worker restarted while its successor holds the path did, at a hot restart with fewer workers).
    static func checkFree(_ path: String) throws(HandoverError) {
        if (try? UnixStream.connect(to: path)) != nil {
            throw HandoverError("control socket \(path) is in use by a running gateway: start with --take-over \(path)")
        }
    }

    /// A successor has taken the listeners.
    var handedOver: Bool { handedOverFlag.load(ordering: .sequentiallyConsistent) }

    func start() {
        thread = OSThread(name: "gw-control") { self.serve() }
    }

    /// Stops taking connections and joins the thread; the path is removed unless a successor owns it now.
    func stop() {
        closing.store(true, ordering: .sequentiallyConsistent)
        shutdown(fd, Int32(SHUT_RDWR))  // wakes the blocked accept
        thread?.join()
        thread = nil
        close(fd)
        if !handedOverFlag.load(ordering: .sequentiallyConsistent) { unlink(path) }
    }

    private func serve() {
        while true {
            let client = accept(fd, nil, nil)
            if client < 0 {
                if errno == EINTR || errno == ECONNABORTED { continue }
                if !closing.load(ordering: .sequentiallyConsistent) {
                    logger.error("control socket \(path): accept: \(String(cString: strerror(errno)))")
                }
                return
            }
            _ = fcntl(client, F_SETFD, FD_CLOEXEC)  // workers started later must not inherit it
            let stream = UnixStream(fd: client)
            do {
                try stream.setTimeout(seconds: 60)
                try handOver(stream)
            } catch {
                logger.warning("take-over on \(path) abandoned, still serving: \(error)")
            }
        }
    }

    /// TAKEOVER 1 -> LISTENERS n GENERATION g (+ descriptors); STARTED -> DRAINING seconds.
    /// See docs/OPERATIONS.md.
    private func handOver(_ stream: UnixStream) throws(HandoverError) {
        guard let request = try stream.receive() else { return }
        guard HandoverLine(parsing: request.line) == .takeOver(version: HandoverLine.version) else {
            try stream.send(.refused("unknown request; this gateway speaks TAKEOVER \(HandoverLine.version)"))
            throw HandoverError("unknown request '\(request.line.prefix(40))'")
        }
        if handedOverFlag.load(ordering: .sequentiallyConsistent) {
            try stream.send(.refused("already handed over"))
            return
        }
        try stream.send(.listeners(count: listeners.count, generation: generation), descriptors: listeners)
        guard let reply = try stream.receive() else { throw HandoverError("the new process went away before starting") }
        let asked = HandoverLine(parsing: reply.line)
        guard asked == .started || asked == .startedMoving else {
            throw HandoverError("the new process said '\(reply.line.prefix(40))'")
        }
        if asked == .startedMoving, let gateway {
            guard moveConnections(stream, gateway) else { return }
        }
        handedOverFlag.store(true, ordering: .sequentiallyConsistent)
        logger.notice("taken over through \(path): draining over \(drainSeconds) s")
        onHandover()
        try? stream.send(.draining(seconds: drainSeconds))
    }

    /// Hands the clients over, accepting held meanwhile. True when the drain follows: every client that
    /// could move has, or the new process stalled. False when it went away: this process serves on
    /// (what it took is lost), accepting again, and a later take-over may follow.
    private func moveConnections(_ stream: UnixStream, _ gateway: Gateway) -> Bool {
        guard gateway.holdAccepting(true) else { return true }
        let started = ContinuousClock.now
        switch ConnectionSender(gateway: gateway, seconds: handoverSeconds, logger: logger).run(stream) {
        case .done(let moved, let kept, let timedOut):
            let took = (ContinuousClock.now - started).seconds
            let bound = timedOut ? " (handover_timeout)" : ""
            logger.notice("handed over \(moved) connections in \(took) s\(bound); \(kept) could not move and drain")
            return true
        case .stalled(let moved, let lost, let why):
            let lostText = "\(lost) more sent and lost"
            logger.error("hand-over stalled (\(why)) after \(moved) connections: \(lostText); the rest drain")
            return true
        case .gone(let lost, let why):
            gateway.holdAccepting(false)
            let lostText = "\(lost) connections handed over are lost with the new process"
            logger.error("take-over on \(path) abandoned mid-hand-over (\(why)): \(lostText); the rest are served here")
            return false
        }
    }
}
