#if canImport(Glibc)
import Glibc
#endif

/// The process's resident memory as Linux reports it in /proc/self/status, for comparing a
/// training step's memory with other frameworks measured the same way. Elsewhere every reading is nil.
public enum ResidentMemory {
    /// Resident set size now (VmRSS), in bytes.
    public static var currentBytes: Int? { statusField("VmRSS") }

    /// The most resident since the process started or the last `resetPeak()` (VmHWM), in bytes.
    public static var peakBytes: Int? { statusField("VmHWM") }

    /// Restarts the peak from the current resident size (writing 5 to /proc/self/clear_refs,
    /// Linux 4.0 and later); false where the kernel refuses it, and the peak then covers the
    /// process's whole life.
    @discardableResult
    public static func resetPeak() -> Bool {
        #if os(Linux)
        guard let file = fopen("/proc/self/clear_refs", "w") else { return false }
        let written = fputs("5", file) >= 0
        return fclose(file) == 0 && written
        #else
        return false
        #endif
    }

    /// A "Name:   1234 kB" line of /proc/self/status, in bytes.
    private static func statusField(_ name: String) -> Int? {
        #if os(Linux)
        guard let file = fopen("/proc/self/status", "r") else { return nil }
        defer { fclose(file) }
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(line) }
        while getline(&line, &capacity, file) > 0, let line {
            let text = String(cString: line)
            guard text.hasPrefix(name + ":") else { continue }
            let fields = text.dropFirst(name.count + 1).split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard let kibibytes = fields.first.flatMap({ Int($0) }) else { return nil }
            return kibibytes * 1024
        }
        return nil
        #else
        return nil
        #endif
    }
}
