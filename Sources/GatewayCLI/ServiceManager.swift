import Logging

/// What a gateway tells systemd when systemd started it (deploy/README.md): READY once it serves,
/// RELOADING then READY around a SIGHUP re-read, STOPPING when a stop begins, STATUS with each
/// stats line, and WATCHDOG pings at half of WatchdogSec from the main loop, so a hung main
/// thread is noticed. Without $NOTIFY_SOCKET every call does nothing.
final class ServiceManager {
    private let notifier: SystemdNotifier?
    private let logger: Logger
    private let clock = ContinuousClock()
    private var pingedAt: ContinuousClock.Instant
    private var failureLogged = false

    /// Takes the notification variables out of the environment, so that no child (a worker) sends.
    init(environment: [String: String], logger: Logger) {
        notifier = SystemdNotifier(environment: environment)
        SystemdNotifier.removeFromEnvironment()
        self.logger = logger
        pingedAt = clock.now
    }

    func ready(_ status: String) { check(notifier?.ready(status: status)) }
    func reloading() { check(notifier?.reloading()) }
    func reloaded() { check(notifier?.readyAfterReload()) }
    func stopping() { check(notifier?.stopping()) }
    func status(_ text: String) { check(notifier?.status(text)) }

    /// Each turn of the main loop; the loop wakes at least every quarter second.
    func tick() {
        guard let notifier, let interval = notifier.watchdogInterval, clock.now - pingedAt >= interval / 2 else { return }
        pingedAt = clock.now
        check(notifier.watchdog())
    }

    private func check(_ sent: Bool?) {
        guard sent == false, !failureLogged else { return }
        failureLogged = true
        logger.warning("cannot notify systemd (NOTIFY_SOCKET): going on without; later failures are not logged")
    }
}
