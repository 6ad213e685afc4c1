import Glibc

/// Large tables reserved with mmap: pages cost nothing until first touched,
/// so a table sized for every connection the gateway may ever hold stays cheap.
enum VirtualMemory {
    static func reserve<T>(_ type: T.Type, count: Int) -> UnsafeMutablePointer<T> {
        reserveBytes(MemoryLayout<T>.stride * count).bindMemory(to: T.self, capacity: count)
    }

    static func reserveBytes(_ bytes: Int) -> UnsafeMutableRawPointer {
        let p = mmap(nil, max(bytes, 1), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0)
        guard let p, p != MAP_FAILED else { fatalError("mmap of \(bytes) bytes failed: errno \(errno)") }
        return p
    }

    static func release<T>(_ p: UnsafeMutablePointer<T>, count: Int) {
        releaseBytes(UnsafeMutableRawPointer(p), MemoryLayout<T>.stride * count)
    }

    static func releaseBytes(_ p: UnsafeMutableRawPointer, _ bytes: Int) {
        munmap(p, max(bytes, 1))
    }
}
