// The host's free memory, read from the operating system (/proc/meminfo and the cgroup's limits
// on Linux). It sits at the bottom because the data readers check their own allocations against
// it as well as the backends (Backend/MemoryAvailability.swift).

#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// What the host can still allocate.
enum HostMemory {
    /// MemAvailable of /proc/meminfo, lowered to a cgroup v2 limit less its usage; elsewhere the
    /// available physical pages.
    static func availableBytes() -> Int? {
        #if os(Linux)
        var available = keyedValue("/proc/meminfo", "MemAvailable").map { saturatingProduct([$0, 1024]) }
        if let limit = firstInteger("/sys/fs/cgroup/memory.max"), let used = firstInteger("/sys/fs/cgroup/memory.current") {
            let left = max(limit - used, 0)
            available = min(available ?? left, left)
        }
        if let available { return available }
        #endif
        let pages = sysconf(Int32(_SC_AVPHYS_PAGES)), size = sysconf(Int32(_SC_PAGESIZE))
        return pages > 0 && size > 0 ? saturatingProduct([pages, size]) : nil
    }

    /// The lines of a small text file (/proc, /sys); none when it cannot be opened.
    private static func lines(_ path: String) -> [Substring] {
        guard let file = fopen(path, "r") else { return [] }
        defer { fclose(file) }
        var text = ""
        var buffer = [CChar](repeating: 0, count: 4096)
        while fgets(&buffer, Int32(buffer.count), file) != nil {
            text += String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        }
        return text.split(separator: "\n")
    }

    /// The number after "key:" in a "Key:   1234 kB" file (/proc/meminfo).
    private static func keyedValue(_ path: String, _ key: String) -> Int? {
        for line in lines(path) where line.hasPrefix(key + ":") {
            return line.dropFirst(key.count + 1).split(separator: " ").first.flatMap { Int($0) }
        }
        return nil
    }

    /// The file's first line as a number; nil for "max" (no limit) or no file.
    private static func firstInteger(_ path: String) -> Int? {
        lines(path).first.flatMap { Int($0.split(separator: " ").first ?? "") }
    }
}
