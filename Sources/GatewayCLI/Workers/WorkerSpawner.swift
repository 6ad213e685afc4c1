import CLinux
import Foundation
import Glibc

/// Starts one worker: this same executable with the same arguments (less --take-over), told by its
/// environment which inherited descriptors are its listeners, its index, its master's pid, and the pipe it
/// reports on (WorkerReport). It inherits those descriptors alone: the master's are close-on-exec.
struct WorkerSpawner {
    static let indexEnvironment = "GATEWAY_WORKER_INDEX"
    static let masterEnvironment = "GATEWAY_WORKER_MASTER_PID"
    static let generationEnvironment = "GATEWAY_WORKER_GENERATION"

    let arguments: [String]
    let generation: UInt32
    /// The master's ticket secret (TicketSecret), when workers serve TLS without a tls_ticket_key_file.
    let ticketSecret: Int32?
    /// This executable's real path: a worker shows in ps(1) by its name, not as "exe".
    let executable: String

    /// The command line for workers: --take-over is the master's business alone.
    init(commandLine: [String], generation: UInt32, ticketSecret: Int32? = nil) {
        self.ticketSecret = ticketSecret
        var arguments: [String] = []
        var skipNext = false
        for argument in commandLine.dropFirst() {
            if skipNext {
                skipNext = false
            } else if argument == "--take-over" {
                skipNext = true
            } else if !argument.hasPrefix("--take-over=") {
                arguments.append(argument)
            }
        }
        self.arguments = arguments
        self.generation = generation
        var path = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let length = readlink("/proc/self/exe", &path, Int(PATH_MAX))
        executable = length > 0 ? String(decoding: path.prefix(length).map { UInt8(bitPattern: $0) }, as: UTF8.self)
            : "/proc/self/exe"
    }

    /// In a worker, its index and its master's hot restart generation (and the worker's environment is
    /// cleaned, and it asks to be stopped when its master dies); nil in any other process.
    static func worker() -> (index: Int, generation: UInt32)? {
        guard let index = getenv(indexEnvironment).flatMap({ Int(String(cString: $0)) }) else { return nil }
        let master = getenv(masterEnvironment).flatMap { pid_t(String(cString: $0)) }
        let generation = getenv(generationEnvironment).flatMap { UInt32(String(cString: $0)) } ?? 0
        for name in [indexEnvironment, masterEnvironment, generationEnvironment] { unsetenv(name) }
        _ = gw_set_parent_death_signal(SIGTERM)
        // The master may have died before the request took effect.
        if let master, getppid() != master { exit(0) }
        return (index, generation)
    }

    /// The new worker's pid; it gets `listeners` and the write end of its report pipe, `report`.
    func spawn(index: Int, listeners: [Int32], report: Int32) throws(HandoverError) -> pid_t {
        // Read now, after ServiceManager took systemd's variables out: no worker notifies as the service.
        var environment = ProcessInfo.processInfo.environment
        environment[GatewayRunner.inheritedEnvironment] = listeners.map(String.init).joined(separator: ",")
        environment[Self.indexEnvironment] = "\(index)"
        environment[Self.masterEnvironment] = "\(getpid())"
        environment[Self.generationEnvironment] = "\(generation)"
        environment[WorkerReport.environment] = "\(report)"
        if let ticketSecret { environment[Settings.environmentName(of: "tls_ticket_key_file")] = TicketSecret.path(ticketSecret) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        // dup2 onto itself clears close-on-exec in the child only (glibc 2.29 and later).
        for fd in listeners + [report] + (ticketSecret.map { [$0] } ?? []) {
            posix_spawn_file_actions_adddup2(&actions, fd, fd)
        }
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // The master blocks its signals to take them synchronously; a worker starts with none blocked.
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK))
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            for p in argv { free(p) }
            for p in envp { free(p) }
        }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, &attributes, argv, envp)
        guard rc == 0 else { throw HandoverError("posix_spawn worker \(index): \(String(cString: strerror(rc)))") }
        return pid
    }
}
