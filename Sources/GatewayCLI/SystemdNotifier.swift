import CLinux
import Glibc

/// systemd's service notification protocol (sd_notify(3)) without libsystemd: each
/// notification is one datagram of `KEY=VALUE` lines to the AF_UNIX socket named by
/// `$NOTIFY_SOCKET`, a path or, when it starts with '@', an abstract name.
///
/// Every send returns whether the datagram went out, and nothing else happens on
/// failure: the gateway's clients matter more than the supervisor's bookkeeping, and
/// a notification systemd never hears already has systemd's own remedy (a start
/// timeout, a watchdog restart). Callers log the first failure and carry on.
public struct SystemdNotifier: Sendable {
    /// Owns the socket so that copies of the notifier share it and the last one closes it.
    private final class Socket: Sendable {
        let descriptor: Int32
        let address: sockaddr_un
        let addressLength: socklen_t

        init(descriptor: Int32, address: sockaddr_un, addressLength: socklen_t) {
            self.descriptor = descriptor
            self.address = address
            self.addressLength = addressLength
        }

        deinit { close(descriptor) }
    }

    private let socket: Socket

    /// How often systemd expects `watchdog()`, from `$WATCHDOG_USEC`; nil when the unit
    /// has no WatchdogSec= or the setting is meant for another process. Ping at half of it.
    public let watchdogInterval: Duration?

    /// Nil when `$NOTIFY_SOCKET` is unset or empty (not started by systemd, or Type= is
    /// not notify), names neither an absolute path nor an abstract socket, does not fit
    /// in a sockaddr_un, or no socket can be opened: in each case nobody can be told.
    public init?(environment: [String: String]) {
        guard let name = environment["NOTIFY_SOCKET"], name.first == "/" || name.first == "@" else { return nil }
        var bytes = Array(name.utf8)
        // An abstract name is the bytes after a leading NUL, with no terminator.
        let isAbstract = bytes[0] == UInt8(ascii: "@")
        if isAbstract { bytes[0] = 0 }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let capacity = MemoryLayout.size(ofValue: address.sun_path)
        // A path keeps room for its NUL terminator.
        guard bytes.count <= capacity - (isAbstract ? 0 : 1) else { return nil }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: bytes) }
        let length = MemoryLayout<sockaddr_un>.offset(of: \.sun_path)! + bytes.count + (isAbstract ? 0 : 1)

        let descriptor = Glibc.socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { return nil }
        socket = Socket(descriptor: descriptor, address: address, addressLength: socklen_t(length))
        watchdogInterval = Self.watchdogInterval(environment)
    }

    private static func watchdogInterval(_ environment: [String: String]) -> Duration? {
        guard let text = environment["WATCHDOG_USEC"], let microseconds = Int64(text), microseconds > 0 else {
            return nil
        }
        // WATCHDOG_PID names the process the watchdog is for; one that inherited it is not.
        if let pid = environment["WATCHDOG_PID"], Int32(pid) != getpid() { return nil }
        return .microseconds(microseconds)
    }

    /// Listeners are bound and the threads run: systemd finishes the start job.
    @discardableResult
    public func ready(status: String) -> Bool {
        send("READY=1\nSTATUS=\(status)")
    }

    /// A reload (SIGHUP) has begun; `readyAfterReload()` ends it. systemd 253 and later
    /// accept RELOADING only with the monotonic time of the request; older ones ignore it.
    @discardableResult
    public func reloading() -> Bool {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        let microseconds = Int64(now.tv_sec) * 1_000_000 + Int64(now.tv_nsec) / 1_000
        return send("RELOADING=1\nMONOTONIC_USEC=\(microseconds)")
    }

    @discardableResult
    public func readyAfterReload() -> Bool {
        send("READY=1")
    }

    /// A graceful stop has begun, so systemd shows the unit as deactivating while it drains.
    @discardableResult
    public func stopping() -> Bool {
        send("STOPPING=1")
    }

    /// A one-line state shown by `systemctl status`.
    @discardableResult
    public func status(_ text: String) -> Bool {
        send("STATUS=\(text)")
    }

    @discardableResult
    public func watchdog() -> Bool {
        send("WATCHDOG=1")
    }

    /// Names the process systemd should treat as the service's main one, for a master that
    /// hands over to a worker; with NotifyAccess=main only the current main process may send.
    @discardableResult
    public func mainPID(_ pid: Int32) -> Bool {
        send("MAINPID=\(pid)")
    }

    /// Child processes must not notify as if they were the service, nor ping its watchdog.
    /// Call before other threads start: unsetenv is not safe alongside getenv elsewhere.
    public static func removeFromEnvironment() {
        for name in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] { unsetenv(name) }
    }

    private func send(_ message: String) -> Bool {
        var address = socket.address
        var message = message
        return message.withUTF8 { text in
            withUnsafePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { address in
                    var sent: Int
                    repeat {
                        // MSG_NOSIGNAL, as sd_notify does: a notification must never raise a signal.
                        sent = sendto(socket.descriptor, text.baseAddress, text.count, Int32(MSG_NOSIGNAL),
                                      address, socket.addressLength)
                    } while sent < 0 && errno == EINTR
                    return sent == text.count
                }
            }
        }
    }
}
