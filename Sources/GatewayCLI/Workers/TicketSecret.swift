import CLinux
import Glibc

/// Workers resume each other's TLS sessions (docs/TLS.md, "Tickets"): without a tls_ticket_key_file the
/// master makes one secret for them all, 32 random bytes in a memory file that no path names, and each
/// worker reads it as its key file through the inherited descriptor (and again on reload, unchanged).
enum TicketSecret {
    /// The memory file's descriptor (close-on-exec: a worker inherits it only by WorkerSpawner's dup2).
    static func make() throws(HandoverError) -> Int32 {
        let fd = gw_random_memfd("gateway-ticket-secret", 32)
        guard fd >= 0 else { throw HandoverError("the workers' ticket secret: \(String(cString: strerror(errno)))") }
        return fd
    }

    /// What a worker is told: its key file is the inherited descriptor.
    static func path(_ fd: Int32) -> String { "/proc/self/fd/\(fd)" }
}
