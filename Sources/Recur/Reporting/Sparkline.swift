#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif

/// A series drawn as one line of block characters (▁▂▃▄▅▆▇█) for a terminal, e.g. a loss curve
/// in a progress line or a summary table.
public enum Sparkline {
    static let levels: [Character] = ["▁", "▂", "▃", "▄", "▅", "▆", "▇", "█"]

    /// `values` as at most `width` characters, lowest level for the smallest value and highest
    /// for the largest. Longer series are split into `width` consecutive buckets, each drawn at
    /// the mean of its drawable values. A bucket with none (NaN, infinity, or ≤ 0 on a log
    /// scale) is drawn as `·`; a constant series at the middle level.
    /// - Parameters:
    ///   - values: the series to draw.
    ///   - width: the most characters; nil draws one per value.
    ///   - logScale: place levels by log10 of the values (for losses and gradient norms that
    ///     span decades).
    public static func render(_ values: [Double], width: Int? = nil, logScale: Bool = false) -> String {
        guard !values.isEmpty else { return "" }
        let count = min(values.count, max(1, width ?? values.count))
        var buckets: [Double?] = []
        for k in 0..<count {
            let start = k * values.count / count
            let end = max(start + 1, (k + 1) * values.count / count)
            let drawable = values[start..<end].filter { $0.isFinite && (!logScale || $0 > 0) }
                .map { logScale ? log10($0) : $0 }
            buckets.append(drawable.isEmpty ? nil : drawable.reduce(0, +) / Double(drawable.count))
        }
        let present = buckets.compactMap { $0 }
        guard let low = present.min(), let high = present.max() else {
            return String(repeating: "·", count: count)
        }
        let top = levels.count - 1
        return String(buckets.map { bucket -> Character in
            guard let bucket else { return "·" }
            guard high > low else { return levels[top / 2] }
            // Halves: the difference of two finite values can overflow to infinity (±1e308).
            let fraction = (bucket / 2 - low / 2) / (high / 2 - low / 2)
            guard fraction.isFinite else { return levels[top / 2] }
            return levels[Int((min(max(fraction, 0), 1) * Double(top)).rounded())]
        })
    }

    /// `render` for float values.
    public static func render(_ values: [Float], width: Int? = nil, logScale: Bool = false) -> String {
        render(values.map(Double.init), width: width, logScale: logScale)
    }
}
