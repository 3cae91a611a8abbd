import CBLAS

#if canImport(Glibc)
import Glibc
#endif

/// Which kernels OpenBLAS runs, and a better choice when it failed to recognise the processor.
///
/// OpenBLAS picks its kernels from the CPUID family and model when it loads. A processor newer
/// than the OpenBLAS build (Debian 12 ships 0.3.21; an Emerald Rapids Xeon reports model 207)
/// falls back to "Prescott", the SSE3 kernels: GEMM then runs 4-5x slower than it could. The
/// environment variable `OPENBLAS_CORETYPE` overrides the choice, but only before the library
/// loads, so a program must set it and restart itself (`recur` does; see `recommendedOverride`).
public enum BLASCoreType {
    /// The kernel set OpenBLAS chose, e.g. `"SkylakeX"`, `"Haswell"`, `"Prescott"`.
    public static var current: String {
        guard let name = openblas_get_corename() else { return "unknown" }
        return String(cString: name)
    }

    /// The value for `OPENBLAS_CORETYPE` that matches this processor's vector instructions, when
    /// OpenBLAS fell back to its generic kernels and no override is set; nil otherwise.
    /// Read from the instruction-set flags in /proc/cpuinfo, so it also covers models OpenBLAS
    /// does not know by number.
    public static var recommendedOverride: String? {
        guard current == "Prescott", getenv("OPENBLAS_CORETYPE") == nil else { return nil }
        let flags = processorFlags()
        if ["avx512f", "avx512bw", "avx512dq", "avx512vl"].allSatisfy(flags.contains) { return "SkylakeX" }
        if ["avx2", "fma"].allSatisfy(flags.contains) { return "Haswell" }
        if flags.contains("avx") { return "Sandybridge" }
        return nil
    }

    /// The instruction-set flags of the first processor in /proc/cpuinfo (empty elsewhere).
    static func processorFlags() -> Set<String> {
        guard let file = fopen("/proc/cpuinfo", "r") else { return [] }
        defer { fclose(file) }
        var line: UnsafeMutablePointer<CChar>?
        var capacity = 0
        defer { free(line) }
        while getline(&line, &capacity, file) > 0, let line {
            let text = String(cString: line)
            guard text.hasPrefix("flags") else { continue }
            guard let colon = text.firstIndex(of: ":") else { return [] }
            return Set(text[text.index(after: colon)...].split(whereSeparator: { $0 == " " || $0 == "\n" }).map(String.init))
        }
        return []
    }
}
