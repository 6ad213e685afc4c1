import CLinux
import Foundation

/// `--workers auto`: the cores this process may use. Its CPU affinity (taskset, systemd CPUAffinity=), and
/// the cgroup v2 CPU quota (cpu.max, the smallest along its cgroup's path: docker --cpus, systemd
/// CPUQuota=) rounded up; one worker per core (docs/OPERATIONS.md, "How many workers").
struct UsableCores: CustomStringConvertible {
    let affinity: Int
    /// Cores' worth of CPU time the cgroup quota allows; nil when none is set.
    let quota: Double?

    var count: Int { max(1, min(affinity, quota.map { Int($0.rounded(.up)) } ?? affinity)) }

    var description: String {
        let quota = self.quota.map { String(format: "%.2f cores", $0) } ?? "none"
        return "\(affinity) cores in the affinity mask, cgroup cpu.max quota \(quota)"
    }

    static func detect() -> UsableCores {
        let affinity = Int(gw_affinity_count())
        return UsableCores(affinity: affinity > 0 ? affinity : ProcessInfo.processInfo.activeProcessorCount,
                           quota: quota())
    }

    /// The smallest cpu.max quota along this process's cgroup v2 path, in cores; nil when none is set
    /// (or under cgroup v1, which this does not read).
    static func quota(cgroups: String = "/proc/self/cgroup", root: String = "/sys/fs/cgroup") -> Double? {
        guard let text = try? String(contentsOfFile: cgroups, encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("0::") }) else { return nil }
        var path = String(line.dropFirst(3))
        var smallest: Double?
        while true {
            if let cores = cpuMax(root + (path == "/" ? "" : path) + "/cpu.max") {
                smallest = min(smallest ?? cores, cores)
            }
            guard path != "/", !path.isEmpty else { return smallest }
            path = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
            if path.isEmpty { path = "/" }
        }
    }

    /// "QUOTA PERIOD" in microseconds as cores; nil for "max" (no quota) or no file.
    static func cpuMax(_ file: String) -> Double? {
        guard let text = try? String(contentsOfFile: file, encoding: .utf8) else { return nil }
        let words = text.split(whereSeparator: \.isWhitespace)
        guard words.count == 2, let quota = Double(words[0]), let period = Double(words[1]), period > 0 else {
            return nil
        }
        return quota / period
    }
}
