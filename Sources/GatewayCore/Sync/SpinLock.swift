import Atomics
import CLinux

/// A test-and-test-and-set spinlock for the inboxes and pools: critical sections
/// are a few loads and stores. After a short spin it yields, because on two
/// cores the holder may be waiting for this very CPU.
final class SpinLock: @unchecked Sendable {  // the state is an atomic; safe to share
    // UnsafeAtomic rather than ManagedAtomic: its accessor inlines; the lock is on every hand-off.
    private let held = UnsafeAtomic<Bool>.create(false)

    deinit { held.destroy() }

    @inline(__always)
    func lock() {
        if !held.exchange(true, ordering: .acquiring) { return }
        lockSlow()
    }

    @inline(__always)
    func unlock() {
        held.store(false, ordering: .releasing)
    }

    @inline(__always)
    func withLock<T>(_ body: () throws -> T) rethrows -> T {
        lock()
        defer { unlock() }
        return try body()
    }

    private func lockSlow() {
        var spins = 0
        repeat {
            while held.load(ordering: .relaxed) {
                spins &+= 1
                if spins < 64 { gw_cpu_relax() } else { sched_yield() }
            }
        } while held.exchange(true, ordering: .acquiring)
    }
}
