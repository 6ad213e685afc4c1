import Atomics
import CLinux
import CURCU

/// Lets an idle stage thread sleep on a futex and be woken by a producer.
/// The producer pays for a wake (a syscall) only when the sleeper has announced
/// that it is going to sleep; the sleeper re-checks for work after announcing,
/// so a wake is never lost.
final class Doorbell: @unchecked Sendable {  // the futex word is only touched atomically
    private static let awake: UInt32 = 0
    private static let asleep: UInt32 = 1

    private let word: UnsafeMutablePointer<UInt32.AtomicRepresentation>
    private var atomic: UnsafeAtomic<UInt32> { UnsafeAtomic(at: word) }
    /// For an owner that sleeps in something else (Monitor, in the poller): how to wake it.
    var waker: (() -> Void)?

    init() {
        word = .allocate(capacity: 1)
        word.initialize(to: .init(Self.awake))
    }

    deinit { word.deallocate() }

    /// Sleeps unless `hasWork` says otherwise once the intent to sleep is visible.
    /// The caller is a registered QSBR thread: it goes offline while asleep so
    /// that it never holds up a grace period.
    func sleep(unless hasWork: () -> Bool) {
        atomic.store(Self.asleep, ordering: .sequentiallyConsistent)
        if hasWork() {
            atomic.store(Self.awake, ordering: .relaxed)
            return
        }
        gw_rcu_thread_offline()
        while atomic.load(ordering: .sequentiallyConsistent) == Self.asleep {
            _ = gw_futex_wait(UnsafeMutableRawPointer(word).assumingMemoryBound(to: UInt32.self), Self.asleep)
        }
        gw_rcu_thread_online()
    }

    /// For an owner that sleeps elsewhere: announces the sleep, then asks `hasWork`;
    /// true means work is there already and the owner should not block. Producers
    /// call `waker` only between this and `announceAwake()`.
    func announceSleep(unless hasWork: () -> Bool) -> Bool {
        atomic.store(Self.asleep, ordering: .sequentiallyConsistent)
        return hasWork()
    }

    func announceAwake() {
        atomic.store(Self.awake, ordering: .relaxed)
    }

    /// Wakes the sleeper if it is asleep; call after publishing work.
    @inline(__always)
    func ring() {
        // The work was published with a release store; without a full fence
        // here x86 may read the word before that store is visible, while the
        // sleeper reads "no work" after announcing sleep: a lost wake-up.
        atomicMemoryFence(ordering: .sequentiallyConsistent)
        if atomic.load(ordering: .relaxed) == Self.asleep {
            ringSlow()
        }
    }

    /// Whether the owner has gone to sleep (used to decide whether to do its work inline).
    @inline(__always)
    var isAsleep: Bool { atomic.load(ordering: .relaxed) == Self.asleep }

    private func ringSlow() {
        if atomic.compareExchange(expected: Self.asleep, desired: Self.awake, ordering: .sequentiallyConsistent).exchanged {
            if let waker {
                waker()
            } else {
                _ = gw_futex_wake(UnsafeMutableRawPointer(word).assumingMemoryBound(to: UInt32.self), 1)
            }
        }
    }
}
