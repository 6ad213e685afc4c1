import Glibc

/// Many connections need many descriptors: raise the soft limit toward the hard one.
enum FileLimit {
    static func raise(toAtLeast needed: Int) {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0, limit.rlim_cur < rlim_t(needed) else { return }
        limit.rlim_cur = min(limit.rlim_max, rlim_t(needed))
        setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit)
    }
}
